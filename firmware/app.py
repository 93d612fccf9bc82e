# The device: acquisition → vitals → batch → seal → flash queue → transport, in one cooperative loop.
#
# Sensor first: service_sensor() drains the FIFO and turns completed seconds into readings, full batches into
# sealed queue records. It runs at the top of every loop turn AND as the transport's idle hook, i.e. inside
# every socket wait (TCP connect, TLS handshake flights, PUBACK waits), so network trouble never stops the
# drain (docs/transport.md). The watchdog is fed by the drain itself, and only while the loop is healthy: the
# sensor answers and was drained recently, and the current loop turn has not run past _TURN_BUDGET_MS. So a
# slow or stalled network (bounded waits that keep draining) keeps it fed, while a stuck sensor bus or a wedged
# loop stops the feeding and the hardware watchdog resets the board.
#
# Ticks wrap (ticks_ms every 12.4 days on the ESP32): long-lived schedules run on Uptime's seconds; ticks
# stamps only measure short intervals, and a stamp whose age reads negative (over half a period old) counts
# as long overdue.
import time
from binascii import hexlify

from acquisition import Acquisition
from batch import BatchBuilder, BatchWait, encode_status
from boardconf import output_rate
from cose import Sealer
from flashqueue import FlashQueue
from max30102 import Max30102
from msgcounter import MessageCounter
from mqtt_link import MqttLink
from transport import Transport
from uptime import Uptime
from vitals import Vitals

FW_VERSION = "0.1.0"
_EPOCH_2000 = 946684800  # MicroPython ports whose epoch is 2000-01-01 (the ESP32's)
_SENSOR_RECOVER_MS = 1000
# Batches filled while the clock is unknown wait in RAM for it (at most this many seconds of readings, at most
# _UNSTAMPED_MAX batches; 8 bytes a reading); beyond that the oldest is dropped and counted (docs/time.md).
_UNSTAMPED_S = 300
_UNSTAMPED_MAX = 20
_DRAIN_STALE_MS = 2000  # device clock: no drain for this long means samples are being lost
# Real time: one loop turn is at most a connect or one delivery, every socket wait bounded by link.timeout_ms
# (5 s); a turn still running after a minute is wedged, not slow.
_TURN_BUDGET_MS = 60000


def client_id(device_id, hw):
    """The MQTT client id "<device id>/<board id>": the broker takes only ids in the certificate CN's namespace
    (docs/broker.md), and the board's own id keeps two boards deployed with one device id out of each other's
    session."""
    uid = hw.unique_id() if hw is not None and hasattr(hw, "unique_id") else b""
    return "%s/%s" % (device_id, hexlify(uid).decode() if uid else "0")


def unix_time():
    """Seconds since 1970 on every port; 0 when the clock was never set (before 2024)."""
    t = int(time.time())
    if time.gmtime(0)[0] == 2000:
        t += _EPOCH_2000
    return t if t > 1704067200 else 0


class Device:
    def __init__(self, cfg, keys, i2c, clock, state_dir, pin=None, ssl_context=None, network=None,
                 watchdog=None, hw=None, log=None, board_name=None, wall_clock=unix_time, timesync=None,
                 net_clock=time):
        self.cfg = cfg
        self.keys = keys
        self.clock = clock
        self.hw = hw
        self.log = log
        self.watchdog = watchdog
        self.board = board_name or cfg["board"]
        self.wall_clock = wall_clock
        self.timesync = timesync  # sntp.TimeSync, or None where the clock is always set (the unix port)
        self.net_clock = net_clock  # what socket waits are bounded by: real time (the device clock on a board)
        self.uptime = Uptime(clock)
        s = cfg["sensor"]
        self.sensor = Max30102(i2c, s["address"], clock)
        self.sensor.configure_from(s)
        self.fs = output_rate(cfg)
        self.vitals = Vitals(self.fs, cfg["vitals"])
        self.acq = Acquisition(self.sensor, clock, pin=pin, consumer=self.vitals)
        report = cfg["report"]
        cfg_id = cfg.get("config_id", 0)  # boardconf.load(): which board file the readings were taken under
        self.batch = BatchBuilder(report["batch_seconds"], keys.device_id, FW_VERSION, cfg_id)
        self._batch_at = 0  # uptime stamp when the current batch began: its start time once the clock is known
        # Full batches waiting for the clock, and the builder that seals them once it is known.
        self._wait = BatchWait(max(1, min(_UNSTAMPED_MAX, _UNSTAMPED_S // report["batch_seconds"])),
                               report["batch_seconds"])
        self._stamper = BatchBuilder(report["batch_seconds"], keys.device_id, FW_VERSION, cfg_id)
        self._plain = bytearray(self.batch.max_encoded_size)
        self._plain_mv = memoryview(self._plain)
        # The counter is bound to this key; a key without counter state here starts at 0 only with the deploy's
        # marker <state_dir>/counter.fresh (docs/format.md, "Key material"): else KeyNotFresh, nothing sealed.
        self.sealer = Sealer(keys, MessageCounter(state_dir + "/counter", keys.kid), max_payload=len(self._plain))
        q = cfg["queue"]
        self.queue = FlashQueue(q["path"], q["capacity_bytes"])
        m = cfg["mqtt"]
        self.insecure = not m["tls"]
        if not self.insecure and ssl_context is None:
            raise ValueError("board file: mqtt.tls is true but no TLS context was given (device certificates "
                             "missing?); set mqtt.tls to false only for a plain test broker")
        self.link = MqttLink(client_id(keys.device_id, hw), m["host"], m["port"],
                             ssl_context=None if self.insecure else ssl_context,
                             keepalive=m["keepalive_s"], idle=self.service_sensor, clock=net_clock,
                             drain=self.drain_now)
        self.transport = Transport(self.link, self.queue, keys.device_id, network=network, log=log, clock=net_clock)
        self.transport.on_connect = self._queue_status
        self.transport.ready = self.clock_known  # no TLS before the clock is set: the certificate check needs it
        self.status_every_s = report["status_interval_s"]
        self.next_status_s = self.status_every_s
        self.last_drain_ms = clock.ticks_ms()
        self.turn_started = net_clock.ticks_ms()  # real time, like the network waits it bounds
        self.sensor_errors = 0
        self.sensor_ok = True
        self.batches = 0
        self.holes_skipped = 0  # lost seconds not sent as readings (holes longer than a batch)
        self.queue_full_drops = 0
        if self.insecure and log:
            log.warning("mqtt.tls is false: the broker link is NOT encrypted (payloads stay sealed)")

    def start(self):
        self.acq.start()
        self._new_batch(self.batch)
        self._arm_last_will()

    def clock_known(self):
        return self.wall_clock() != 0

    # ---- sensor side: never waits on the network ---------------------------------------------------------

    def service_sensor(self, force=False):
        clock = self.clock
        now = clock.ticks_ms()
        since = clock.ticks_diff(now, self.last_drain_ms)  # < 0: over half a tick period ago
        if not self.sensor_ok:
            if 0 <= since < _SENSOR_RECOVER_MS:
                return
            self.last_drain_ms = now
            self.acq.hold()  # keep measuring the time without drains, however long the outage
            try:
                self.sensor.recover()
                self.sensor_ok = True
            except OSError:
                self.sensor_errors += 1
                return
        elif 0 <= since < self.acq.poll_ms >> 1 and not force:
            return
        try:
            self.acq.drain()
        except OSError as e:
            self.sensor_errors += 1
            self.sensor_ok = False
            if self.log:
                self.log.warning("sensor: %r; recovering" % (e,))
            return
        self.last_drain_ms = now
        if self.watchdog is not None and self._turn_in_budget():
            self.watchdog.feed()
        # One reading per second of samples, lost seconds included (Vitals.gap), so each keeps its true second.
        # A hole longer than a batch (the sensor unreachable, the loop stalled for minutes) is not sent as
        # nulls: the batch ends before it and the next begins after it (a batch is contiguous in time).
        self.acq.reading_ready = False
        while self.vitals.pending():
            if self.vitals.lost_due() > self.batch.capacity:
                self._skip_hole()
            else:
                self._add_reading()

    def _skip_hole(self):
        self.seal_batch()  # what came before the hole, if anything
        k = self.vitals.drop_lost()
        self.holes_skipped += k
        if self.log:
            self.log.info("sensor: %d s without samples; the batch ends before them, the next begins after" % k)
        self._new_batch(self.batch)
        # the seconds still due were sampled after the hole, the last of them just now: the batch begins there
        self._batch_at -= 10 * self.vitals.pending()

    def drain_now(self):
        """Drain whatever the FIFO holds, off schedule: before a long uninterruptible call (a TLS handshake step)
        the FIFO should start empty."""
        self.service_sensor(True)

    def _add_reading(self):
        hr, spo2, pi, quality = self.vitals.reading()
        self.batch.add(hr, spo2, pi, quality)
        if self.batch.full:
            self.seal_batch()

    def _new_batch(self, builder):
        builder.clear(0)
        self.batch = builder
        self._batch_at = self.uptime.stamp()

    def _start_time(self, start_at, now_s):
        """Unix seconds at uptime stamp start_at, given the time now (a batch may stay open for days)."""
        return now_s - self.uptime.since_s(start_at)

    def seal_batch(self):
        """Stamp, encode, seal with the vitals topic as AAD, and queue the current batch (if it has readings).
        While the clock is unknown the batch waits, unstamped, for stamp_waiting()."""
        if not self.batch.count:
            return
        now_s = self.wall_clock()
        if now_s:
            self._seal(self.batch, self._start_time(self._batch_at, now_s))
            self._new_batch(self.batch)
            return
        if self._wait.put(self.batch, self._batch_at) and self.log and self._wait.dropped == 1:
            self.log.error("time: clock still not set after %d s of readings; dropping the oldest unstamped "
                           "batch (counted in the status as dropped)" % ((self._wait.slots + 1) * self.batch.capacity))
        self._new_batch(self.batch)

    @property
    def unstamped_dropped(self):
        return self._wait.dropped

    def stamp_waiting(self):
        """The clock is known: seal the batches that waited for it, oldest first, with their true start times."""
        now_s = self.wall_clock()
        while now_s:
            start_at = self._wait.take(self._stamper)
            if start_at is None:
                return
            self._seal(self._stamper, self._start_time(start_at, now_s))

    def _seal(self, builder, start_s):
        builder.start_s = start_s
        n = builder.encode_into(self._plain)
        sealed = self.sealer.seal(self.transport.vitals_topic, self._plain_mv[:n])
        if self.queue.put(sealed) < 0:
            self.queue_full_drops += 1
        self.batches += 1

    # ---- status --------------------------------------------------------------------------------------------

    def status(self):
        t = self.transport.counts
        hw = self.hw
        return encode_status(
            FW_VERSION, self.board, self.uptime.update(),
            hw.reset_cause() if hw else "unknown", hw.free_heap() if hw else 0, self.queue.depth(),
            self.queue.stats()["dropped"] + self.queue_full_drops + self.unstamped_dropped, self.acq.lost, t["reconnects"],
            t["tls_failures"], rssi=self.transport.network.rssi() if self.transport.network else None,
            insecure=self.insecure, time_s=self.wall_clock() or None, sensor_errors=self.sensor_errors,
            wifi_failures=getattr(self.transport.network, "failures", 0), dns_failures=t["dns_failures"])

    def _sealed_status(self, payload):
        return bytes(self.sealer.seal(self.transport.status_topic, payload))

    def _arm_last_will(self):
        # Sealed like any status; the broker publishes it (retained) if the link dies without DISCONNECT.
        offline = self._sealed_status(encode_status(FW_VERSION, self.board, 0, "offline", 0, 0, 0, 0, 0, 0,
                                                    insecure=self.insecure))
        self.link.set_last_will(self.transport.status_topic, offline, retain=True, qos=1)

    def _queue_status(self, transport):
        """A fresh sealed status (retained), sent on every connect and every status_interval_s."""
        transport.status_pending = self._sealed_status(self.status())
        self.next_status_s = self.uptime.s + self.status_every_s

    # ---- the loop ------------------------------------------------------------------------------------------

    def sync_time(self):
        """Set the clock from SNTP once Wi-Fi is up (and re-sync it now and then); never blocks."""
        ts = self.timesync
        if ts is None or not ts.due():
            return
        net = self.transport.network
        if net is not None and not net.up():
            return
        was_known = self.clock_known()
        ts.step()
        if not was_known and self.clock_known():
            self.stamp_waiting()

    def run_once(self):
        self.turn_started = self.net_clock.ticks_ms()
        self.service_sensor()
        self.sync_time()
        if self.uptime.update() >= self.next_status_s and self.transport.up:
            self._queue_status(self.transport)
        was_up = self.transport.up
        self.transport.step()
        if was_up and not self.transport.up:
            self._arm_last_will()  # a fresh will for the next connection
        self.service_sensor()
        if self.watchdog and self.healthy():
            self.watchdog.feed()

    def _turn_in_budget(self):
        return 0 <= self.net_clock.ticks_diff(self.net_clock.ticks_ms(), self.turn_started) < _TURN_BUDGET_MS

    def healthy(self):
        """The sensor answers and was drained recently, and the loop turn in progress is not wedged."""
        return (self.sensor_ok and 0 <= self.clock.ticks_diff(self.clock.ticks_ms(), self.last_drain_ms) < _DRAIN_STALE_MS
                and self._turn_in_budget())

    def run(self, until=None):
        """Run forever, or until until() is true (tests, the simulator)."""
        self.start()
        while until is None or not until():
            self.run_once()
            self.clock.sleep_ms(max(1, self.acq.poll_ms >> 2))
