/* oxilink board double: the board's clock, for one MicroPython process (LD_PRELOAD).
 *
 * A board's two clocks are not the host's:
 *   - realtime (time(), gettimeofday(), CLOCK_REALTIME): the ESP32's RTC, 2000-01-01 at power-on, moved by
 *     machine.RTC().datetime(...). mbedTLS checks certificate dates against time(), so TLS follows it.
 *   - monotonic (CLOCK_MONOTONIC/BOOTTIME, time.ticks_ms/us): time since boot, which a test may start just
 *     before the 2**30 ms wrap.
 * Both run at `rate` x real time (1000 = real time), so simulated time can run faster than the host's.
 *
 * The state lives in a 64-byte file ($OXILINK_CLOCK_FILE) shared by the launcher and the board process:
 *   u32 magic "OXCK", u32 seq, i64 realtime_base_ns, i64 mono_base_ns, i64 host_anchor_ns (host
 *   CLOCK_MONOTONIC), u32 rate_milli, u32 pad, u32 seq_end, u32 pad, 8 bytes spare.
 * board_realtime = realtime_base + (host_now - host_anchor) * rate / 1000 (monotonic likewise). A writer
 * rewrites the whole record with one write() and a new seq in both seq fields; a reader retries on a
 * mismatch. The file is mmap()ed, so reading the clock costs no system call.
 *
 * Interposed: clock_gettime, gettimeofday, time, and their 64-bit-time variants (__clock_gettime64,
 * __gettimeofday64, __time64), which a 32-bit build made with -D_TIME_BITS=64 calls (and libfaketime 0.9.10
 * misses). With rate != 1000, relative sleeps and waits (nanosleep, clock_nanosleep, usleep, select, poll,
 * and their time64 variants) are shortened by the same factor. Without the variable the shim does nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x4b43584fu /* "OXCK" little-endian */

struct state {
    uint32_t magic;
    uint32_t seq;
    int64_t realtime_base_ns;
    int64_t mono_base_ns;
    int64_t host_anchor_ns;
    uint32_t rate_milli;
    uint32_t pad1;
    uint32_t seq_end;
    uint32_t pad2;
    uint8_t spare[8];
};

static volatile const struct state *shared;
static int initialised;

static void init(void) {
    if (initialised) {
        return;
    }
    initialised = 1;
    const char *path = getenv("OXILINK_CLOCK_FILE");
    if (!path || !*path) {
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    void *p = mmap(NULL, sizeof(struct state), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED && ((const struct state *)p)->magic == MAGIC) {
        shared = p;
    }
}

/* The host's monotonic clock, straight from the kernel (never through our own wrappers). */
static int64_t host_mono_ns(void) {
#if defined(SYS_clock_gettime64) && !defined(__x86_64__)
    struct { int64_t s; int64_t ns; } t64;
    if (syscall(SYS_clock_gettime64, CLOCK_MONOTONIC, &t64) == 0) {
        return t64.s * 1000000000LL + t64.ns;
    }
#endif
    struct timespec t;
    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Board time in ns for `which` (0 realtime, 1 monotonic); returns 0 when the shim is inactive. */
static int board_ns(int which, int64_t *out) {
    init();
    if (!shared) {
        return 0;
    }
    for (int tries = 0; tries < 100; tries++) {
        struct state s;
        memcpy(&s, (const void *)shared, sizeof s);
        __sync_synchronize();
        if (s.seq != s.seq_end) {
            continue;
        }
        int64_t elapsed = host_mono_ns() - s.host_anchor_ns;
        if (s.rate_milli != 1000) {
            elapsed = elapsed / 1000 * s.rate_milli + elapsed % 1000 * s.rate_milli / 1000;
        }
        *out = (which ? s.mono_base_ns : s.realtime_base_ns) + elapsed;
        return 1;
    }
    return 0;
}

static uint32_t rate_milli(void) {
    init();
    return shared ? shared->rate_milli : 1000;
}

static int clock_kind(clockid_t id) {
    switch (id) {
        case CLOCK_REALTIME:
        case CLOCK_REALTIME_COARSE:
            return 0;
        case CLOCK_MONOTONIC:
        case CLOCK_MONOTONIC_RAW:
        case CLOCK_MONOTONIC_COARSE:
        case CLOCK_BOOTTIME:
            return 1;
        default:
            return -1;
    }
}

/* Real time to wait for `ns` of board time. */
static int64_t real_wait_ns(int64_t ns) {
    uint32_t r = rate_milli();
    return r == 1000 || r == 0 ? ns : ns / r * 1000 + ns % r * 1000 / r;
}

/* ---- clocks ---------------------------------------------------------------------------------------- */

int clock_gettime(clockid_t id, struct timespec *ts) {
    int64_t ns;
    int kind = clock_kind(id);
    if (kind >= 0 && board_ns(kind, &ns)) {
        ts->tv_sec = (time_t)(ns / 1000000000LL);
        ts->tv_nsec = (long)(ns % 1000000000LL);
        return 0;
    }
    return (int)syscall(SYS_clock_gettime, id, ts);
}

int gettimeofday(struct timeval *tv, void *tz) {
    int64_t ns;
    if (board_ns(0, &ns)) {
        tv->tv_sec = (time_t)(ns / 1000000000LL);
        tv->tv_usec = (suseconds_t)(ns % 1000000000LL / 1000);
        return 0;
    }
    static int (*real)(struct timeval *, void *);
    if (!real) {
        real = dlsym(RTLD_NEXT, "gettimeofday");
    }
    return real(tv, tz);
}

time_t time(time_t *t) {
    int64_t ns;
    time_t now;
    if (board_ns(0, &ns)) {
        now = (time_t)(ns / 1000000000LL);
    } else {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        now = tv.tv_sec;
    }
    if (t) {
        *t = now;
    }
    return now;
}

#if !defined(__x86_64__)
/* glibc's time64 ABI on 32-bit x86: struct __timespec64 {int64 sec; int32 nsec; int32 pad},
 * struct __timeval64 {int64 sec; int64 usec}. */
struct ts64 { int64_t tv_sec; int32_t tv_nsec; int32_t pad; };
struct tv64 { int64_t tv_sec; int64_t tv_usec; };

int __clock_gettime64(clockid_t id, struct ts64 *ts) {
    int64_t ns;
    int kind = clock_kind(id);
    if (kind >= 0 && board_ns(kind, &ns)) {
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = (int32_t)(ns % 1000000000LL);
        ts->pad = 0;
        return 0;
    }
    struct { int64_t s; int64_t ns; } k;
    int r = (int)syscall(SYS_clock_gettime64, id, &k);
    if (r == 0) {
        ts->tv_sec = k.s;
        ts->tv_nsec = (int32_t)k.ns;
        ts->pad = 0;
    }
    return r;
}

int __gettimeofday64(struct tv64 *tv, void *tz) {
    (void)tz;
    int64_t ns;
    if (!tv) {
        return 0;
    }
    if (!board_ns(0, &ns)) {
        struct ts64 t;
        __clock_gettime64(CLOCK_REALTIME, &t);
        ns = t.tv_sec * 1000000000LL + t.tv_nsec;
    }
    tv->tv_sec = ns / 1000000000LL;
    tv->tv_usec = ns % 1000000000LL / 1000;
    return 0;
}

int64_t __time64(int64_t *t) {
    struct ts64 ts;
    __clock_gettime64(CLOCK_REALTIME, &ts);
    if (t) {
        *t = ts.tv_sec;
    }
    return ts.tv_sec;
}
#endif

/* ---- waits, scaled when simulated time runs faster ----------------------------------------------- */

static void scale_timespec(struct timespec *dst, const struct timespec *src) {
    int64_t ns = real_wait_ns((int64_t)src->tv_sec * 1000000000LL + src->tv_nsec);
    dst->tv_sec = (time_t)(ns / 1000000000LL);
    dst->tv_nsec = (long)(ns % 1000000000LL);
}

int nanosleep(const struct timespec *req, struct timespec *rem) {
    struct timespec r = *req;
    if (rate_milli() != 1000) {
        scale_timespec(&r, req);
    }
    return (int)syscall(SYS_nanosleep, &r, rem);
}

int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem) {
    struct timespec r = *req;
    if (flags & TIMER_ABSTIME && clock_kind(id) >= 0) {
        /* an absolute board time: wait for the difference, in real time */
        struct timespec now;
        clock_gettime(id, &now);
        int64_t left = ((int64_t)req->tv_sec - now.tv_sec) * 1000000000LL + (req->tv_nsec - now.tv_nsec);
        if (left <= 0) {
            return 0;
        }
        left = real_wait_ns(left);
        r.tv_sec = (time_t)(left / 1000000000LL);
        r.tv_nsec = (long)(left % 1000000000LL);
        id = CLOCK_MONOTONIC;
        flags = 0;
        rem = NULL;
    } else if (!(flags & TIMER_ABSTIME) && rate_milli() != 1000) {
        scale_timespec(&r, req);
    }
    return syscall(SYS_clock_nanosleep, id, flags, &r, rem) == 0 ? 0 : errno;
}

int usleep(useconds_t us) {
    struct timespec r = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };
    return nanosleep(&r, NULL);
}

int select(int n, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv) {
    static int (*real)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
    if (!real) {
        real = dlsym(RTLD_NEXT, "select");
    }
    if (tv && rate_milli() != 1000) {
        int64_t ns = real_wait_ns(((int64_t)tv->tv_sec * 1000000 + tv->tv_usec) * 1000);
        tv->tv_sec = (time_t)(ns / 1000000000LL);
        tv->tv_usec = (suseconds_t)(ns % 1000000000LL / 1000);
    }
    return real(n, rd, wr, ex, tv);
}

int poll(struct pollfd *fds, nfds_t n, int timeout) {
    static int (*real)(struct pollfd *, nfds_t, int);
    if (!real) {
        real = dlsym(RTLD_NEXT, "poll");
    }
    if (timeout > 0 && rate_milli() != 1000) {
        int64_t ms = real_wait_ns((int64_t)timeout * 1000000) / 1000000;
        timeout = ms > 0 ? (int)ms : 1;
    }
    return real(fds, n, timeout);
}

#if !defined(__x86_64__)
struct ts64s { int64_t tv_sec; int64_t tv_nsec; };

int __nanosleep64(const struct ts64 *req, struct ts64 *rem) {
    struct timespec r = { (time_t)req->tv_sec, req->tv_nsec }, left;
    int ret = nanosleep(&r, &left);
    if (rem) {
        rem->tv_sec = left.tv_sec;
        rem->tv_nsec = (int32_t)left.tv_nsec;
        rem->pad = 0;
    }
    return ret;
}

int __clock_nanosleep_time64(clockid_t id, int flags, const struct ts64 *req, struct ts64 *rem) {
    struct timespec r = { (time_t)req->tv_sec, req->tv_nsec }, left = { 0, 0 };
    int ret = clock_nanosleep(id, flags, &r, &left);
    if (rem) {
        rem->tv_sec = left.tv_sec;
        rem->tv_nsec = (int32_t)left.tv_nsec;
        rem->pad = 0;
    }
    return ret;
}

int __select64(int n, fd_set *rd, fd_set *wr, fd_set *ex, struct tv64 *tv) {
    if (!tv) {
        return select(n, rd, wr, ex, NULL);
    }
    struct timeval t = { (time_t)tv->tv_sec, (suseconds_t)tv->tv_usec };
    int ret = select(n, rd, wr, ex, &t);
    tv->tv_sec = t.tv_sec;
    tv->tv_usec = t.tv_usec;
    return ret;
}
#endif
