# oxilink main.py (ESP32): load the board file and secrets, start the watchdog, run the device.
# Safe mode (app skipped, REPL reachable): hold the BOOT button (GPIO0; GPIO9 on the C3) during reset, or crash
# MAX_CRASHES times in a row (watchdog resets, unhandled exceptions; power-on and brown-out never count). It
# ends by itself after startup.SAFE_MODE_IDLE_MS without REPL activity (reset, the app is tried again), or
# stays while a file named safe_mode exists. See startup.py.
# A deploy that did not finish (its `deploying` flag is still here) also means safe mode: the modules may be a
# mix of two versions, so that check comes before importing any of them.
import sys
import time


def _boot_button_held():
    from machine import Pin

    pin = 0
    try:
        import json

        with open("board.json") as f:
            if json.load(f).get("platform") == "esp32c3":
                pin = 9
    except (OSError, ValueError, AttributeError):  # safe mode must work with a broken board file too
        if "C3" in getattr(sys.implementation, "_machine", ""):
            pin = 9
    return Pin(pin, Pin.IN, Pin.PULL_UP).value() == 0


def _deploy_unfinished():
    try:
        open("deploying").close()
        return True
    except OSError:
        return False


def _safe_mode(startup, reason, crashes):
    print("oxilink: SAFE MODE (%s): the app is not started; the REPL is yours." % reason)
    if startup.stays(reason):
        print("oxilink: delete 'safe_mode' and reset to run the app.")
        return
    import machine

    def leave():
        crashes.retry_app()
        print("oxilink: no REPL activity for %d min: leaving safe mode, the app is tried again (retry %d)"
              % (startup.SAFE_MODE_IDLE_MS // 60000, crashes.retries))
        machine.reset()

    watch = startup.SafeModeExit(time, startup.SAFE_MODE_IDLE_MS, leave)
    print("oxilink: with no REPL activity for %d min the board resets and tries the app again; to stay, "
          "create a file named safe_mode. Fix the cause, then reset." % (startup.SAFE_MODE_IDLE_MS // 60000))
    try:
        import os

        os.dupterm(startup.ConsoleWatch(watch.activity))  # console output = someone is at the REPL
    except (AttributeError, OSError, TypeError):
        pass  # no dupterm: the time limit alone applies
    # Timer 1: timer 0 is wdtkeeper's (boot.py feeds a watchdog left running by a soft reset)
    machine.Timer(1).init(mode=machine.Timer.PERIODIC, period=5000, callback=lambda t: watch.check())


def run(startup, crashes):
    import app
    import clock
    import hw_esp32
    from log import Log
    from sntp import TimeSync
    from tlsconfig import client_context

    cause = hw_esp32.reset_cause()
    reason = startup.safe_mode_reason(crashes.boot(cause), _boot_button_held())
    if reason:
        _safe_mode(startup, reason, crashes)
        return
    cfg = startup.load_board("board.json")
    keys, ssid, password, broker = startup.load_secrets("secrets.json")
    startup.apply_broker(cfg, broker)
    key_der, cert_der, ca_der = startup.load_certs("certs")
    ntp = startup.time_server(cfg, "secrets.json")
    log = Log(keys.device_id)
    log.info("oxilink %s on %s (%s), reset cause %s, crashes in a row %d, safe-mode retries %d"
             % (app.FW_VERSION, cfg["board"], cfg["platform"], cause, crashes.count, crashes.retries))
    import wdtkeeper

    wdtkeeper.stop()  # the app feeds the watchdog from here on (boot.py kept it fed after a soft reset)
    wdt = hw_esp32.Watchdog(30000)  # above the longest uninterruptible step; see docs/transport.md
    network = hw_esp32.Network(ssid, password, log)
    device = app.Device(cfg, keys, hw_esp32.i2c(cfg), clock.Clock(), "", pin=hw_esp32.int_pin(cfg),
                        ssl_context=client_context(key_der, cert_der, ca_der), network=network, watchdog=wdt,
                        hw=hw_esp32, log=log,
                        timesync=TimeSync(ntp, hw_esp32.set_time, log, resync_ms=cfg["time"]["resync_h"] * 3600000,
                                          dns_server=network.dns_server))
    started = time.ticks_ms()

    def until():
        if crashes.count and time.ticks_diff(time.ticks_ms(), started) > startup.HEALTHY_AFTER_MS:
            crashes.healthy()
        return False

    device.run(until)


def main():
    if _deploy_unfinished():
        print("oxilink: SAFE MODE (a deploy did not finish: the file 'deploying' is present): the app is not "
              "started; run the deploy again.")
        return
    import startup

    crashes = startup.CrashCounter()
    try:
        run(startup, crashes)
    except KeyboardInterrupt:  # the user took over (Ctrl-C, mpremote): a watchdog reset that follows is theirs
        crashes.user_interrupted()
        raise
    except Exception as e:  # a crash: counted, then reset and try again
        crashes.crashed()
        sys.print_exception(e)
        with open("last_error.txt", "w") as f:
            sys.print_exception(e, f)
        time.sleep(5)
        import machine

        machine.reset()


main()
