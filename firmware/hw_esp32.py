# Hardware adapter for the ESP32 family: the only module that touches machine/network/esp32.
# Everything here is thin: build objects from the validated board config and hand them to the pure logic.
import gc

import machine
import network

from wifi import Station

_RESET_CAUSES = {
    getattr(machine, "PWRON_RESET", 1): "power-on",
    getattr(machine, "HARD_RESET", 2): "hard",
    getattr(machine, "WDT_RESET", 3): "watchdog",
    getattr(machine, "DEEPSLEEP_RESET", 4): "deepsleep",
    getattr(machine, "SOFT_RESET", 5): "soft",
}


def i2c(cfg):
    c = cfg["i2c"]
    return machine.I2C(c["bus"], scl=machine.Pin(c["scl"]), sda=machine.Pin(c["sda"]), freq=c["freq"])


def int_pin(cfg):
    pin = cfg["sensor"]["int_pin"]
    return None if pin is None else machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP)


class Watchdog:
    """machine.WDT: once started it cannot be stopped; the main loop feeds it only while healthy."""

    def __init__(self, timeout_ms):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self._wdt.feed()


def Network(ssid, password, log=None):
    """The Wi-Fi station: wifi.Station over network.WLAN(STA_IF). up() never blocks; failures are logged once
    with their cause and retried with backoff."""
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    return Station(wlan, ssid, password, log)


def unique_id():
    return machine.unique_id()  # the factory MAC: one per board


def reset_cause():
    return _RESET_CAUSES.get(machine.reset_cause(), "unknown")


def set_time(unix_s, us=0):
    """Set the RTC (what mbedTLS and time.time() read) to unix seconds; ESP32 time counts from 2000."""
    import time

    tm = time.gmtime(unix_s - (946684800 if time.gmtime(0)[0] == 2000 else 0))
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], us))


def free_heap():
    gc.collect()
    return gc.mem_free()


def reset():
    machine.reset()
