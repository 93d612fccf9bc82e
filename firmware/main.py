# oxilink main.py (ESP32): load the board file and secrets, start the watchdog, run the device.
# Safe mode (app skipped, REPL reachable): hold the BOOT button (GPIO0/GPIO9) during reset, create a file
# named safe_mode, or crash MAX_CRASHES boots in a row. Leave safe mode: delete safe_mode / fix and reset.
# A deploy that did not finish (its `deploying` flag is still here) also means safe mode: the modules may be a
# mix of two versions, so that check comes before importing any of them.
import sys
import time


def _boot_button_held():
    from machine import Pin

    import boardconf

    try:
        platform = boardconf.load("board.json")["platform"]
    except ValueError:
        return False
    return Pin(9 if platform == "esp32c3" else 0, Pin.IN, Pin.PULL_UP).value() == 0


def _deploy_unfinished():
    try:
        open("deploying").close()
        return True
    except OSError:
        return False


def run():
    if _deploy_unfinished():
        print("oxilink: SAFE MODE (a deploy did not finish: the file 'deploying' is present): the app is not "
              "started; run the deploy again.")
        return
    import startup
    import app
    import clock
    import hw_esp32
    from log import Log
    from sntp import TimeSync
    from tlsconfig import client_context

    crashes = startup.CrashCounter()
    reason = startup.safe_mode_reason(crashes.boot(), _boot_button_held())
    if reason:
        print("oxilink: SAFE MODE (%s): the app is not started; the REPL is yours." % reason)
        print("oxilink: fix the cause, delete 'crashes' / 'safe_mode', then reset.")
        return
    cfg = startup.load_board("board.json")
    keys, ssid, password, broker = startup.load_secrets("secrets.json")
    startup.apply_broker(cfg, broker)
    key_der, cert_der, ca_der = startup.load_certs("certs")
    ntp = startup.time_server(cfg, "secrets.json")
    log = Log(keys.device_id)
    log.info("oxilink %s on %s (%s), reset cause %s" % (app.FW_VERSION, cfg["board"], cfg["platform"],
                                                       hw_esp32.reset_cause()))
    import wdtkeeper

    wdtkeeper.stop()  # the app feeds the watchdog from here on (boot.py kept it fed after a soft reset)
    wdt = hw_esp32.Watchdog(30000)  # above DNS (blocking) + one TLS handshake flight; see docs/transport.md
    network = hw_esp32.Network(ssid, password)
    device = app.Device(cfg, keys, hw_esp32.i2c(cfg), clock.Clock(), "", pin=hw_esp32.int_pin(cfg),
                        ssl_context=client_context(key_der, cert_der, ca_der), network=network, watchdog=wdt,
                        hw=hw_esp32, log=log,
                        timesync=TimeSync(ntp, hw_esp32.set_time, log, resync_ms=cfg["time"]["resync_h"] * 3600000))
    started = time.ticks_ms()

    def until():
        if crashes.count and time.ticks_diff(time.ticks_ms(), started) > startup.HEALTHY_AFTER_MS:
            crashes.healthy()
        return False

    device.run(until)


try:
    run()
except Exception as e:  # the crash counter already counted this boot; reset and try again
    sys.print_exception(e)
    with open("last_error.txt", "w") as f:
        sys.print_exception(e, f)
    time.sleep(5)
    import machine

    machine.reset()
