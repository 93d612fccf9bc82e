"""FHIR Devices: one per device version (deviceinfo.py) as the PHD IG's PhdDevice, and the receiver itself as
the gateway (PhgDevice) that turned the readings into FHIR.

A device version is immutable, so a firmware update, another `cfg`, a recalibration or a new certificate is a
new Device (its own id and `urn:oxilink:device-version` identifier) that shares the `urn:oxilink:device`
pseudonym with the device's earlier versions; Observations name the version they were taken under. Nothing
is ever updated in place.
"""

from __future__ import annotations

from .. import __version__
from .deviceinfo import DeviceVersion
from .fhir import MDC, OXILINK_CODES, PHD_PROFILE, UCUM, Key, fhir_id

DEVICE_SYSTEM = "urn:oxilink:device"
VERSION_SYSTEM = "urn:oxilink:device-version"
CERTIFICATE_SYSTEM = "urn:oxilink:device-certificate"
GATEWAY_SYSTEM = "urn:oxilink:gateway"
SENSOR_SYSTEM = "urn:oxilink:sensor"
PULSE_OXIMETER = {"systemType": {"coding": [{"system": MDC, "code": "528388",
                                             "display": "MDC_DEV_SPEC_PROFILE_PULS_OXIM"}],
                                 "text": "Pulse oximeter"},
                  "version": "1"}
UNKNOWN = "unknown"


def _mdc(code: int, display: str, text: str) -> dict:
    return {"coding": [{"system": MDC, "code": str(code), "display": display}], "text": text}


def _own(code: str, text: str) -> dict:
    return {"coding": [{"system": OXILINK_CODES, "code": code}], "text": text}


def _quantity(value: float, ucum: str, unit: str | None = None) -> dict:
    return {"value": value, "unit": unit or ucum, "system": UCUM, "code": ucum}


def device_key(v: DeviceVersion) -> Key:
    return Key("Device", fhir_id("oxl-dev", v.device, v.id), VERSION_SYSTEM, f"{v.device}/{v.id}")


def gateway_key() -> Key:
    return Key("Device", fhir_id("oxl-gateway", __version__), GATEWAY_SYSTEM, f"oxilink-receiver/{__version__}")


def _sensor_properties(sensor: dict) -> list[dict]:
    part = sensor["model"].upper()
    settings = [f"{sensor.get('mode', '?')} mode", f"{sensor.get('sample_rate', '?')} sps",
                f"averaging {sensor.get('averaging', '?')}", f"pulse width {sensor.get('pulse_width_us', '?')} us",
                f"ADC range {sensor.get('adc_range_na', '?')} nA", f"red LED {sensor.get('led_red_ma', '?')} mA",
                f"IR LED {sensor.get('led_ir_ma', '?')} mA"] + (["red and IR swapped"] if sensor.get("swap_red_ir")
                                                                else [])
    return [{"type": _own("sensor", "Sensor part"),
             "valueCode": [{"coding": [{"system": SENSOR_SYSTEM, "code": sensor["model"], "display": part}],
                            "text": f"{part}: " + ", ".join(settings)}]}]


def _calibration_properties(cal: dict) -> list[dict]:
    out = []
    curve = cal.get("spo2_curve")
    if curve:
        out.append({"type": _own("spo2-calibration", "SpO2 calibration in force: SpO2 = c0 + c1*R + c2*R^2 "
                                                     "(R: ratio of ratios), coefficients c0, c1, c2"),
                    "valueQuantity": [_quantity(c, "%") for c in curve]})
    if cal.get("min_pi_pct") is not None:
        out.append({"type": _own("min-perfusion-index", "Perfusion index below which SpO2 is not reported"),
                    "valueQuantity": [_quantity(cal["min_pi_pct"], "%")]})
    if cal.get("finger_min_counts") is not None:
        out.append({"type": _own("finger-min-counts", "IR level (ADC counts) below which there is no finger"),
                    "valueQuantity": [_quantity(cal["finger_min_counts"], "{counts}", "counts")]})
    for name in sorted(set(cal) - {"spo2_curve", "min_pi_pct", "finger_min_counts"}):
        value = cal[name]
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append({"type": _own(name.replace("_", "-"), f"vitals.{name} (board file)"),
                        "valueQuantity": [{"value": value}]})
    return out


def device_resource(v: DeviceVersion) -> tuple[dict, Key]:
    d = v.doc
    key = device_key(v)
    identifiers = [{"system": key.system, "value": key.value}, {"system": DEVICE_SYSTEM, "value": v.device}]
    if d.get("certificate_serial"):
        identifiers.append({"type": {"text": "X.509 certificate serial number (issued by the oxilink project CA)"},
                            "system": CERTIFICATE_SYSTEM, "value": d["certificate_serial"]})
    versions = [{"type": _mdc(531976, "MDC_ID_PROD_SPEC_FW", "Firmware revision"), "value": str(d["firmware"])}]
    if d.get("board"):
        versions.append({"type": _mdc(531974, "MDC_ID_PROD_SPEC_HW", "Hardware revision (board)"),
                         "value": d["board"]})
    versions.append({"type": _own("board-config", "Board configuration version (cfg, sent in every batch)"),
                     "value": str(d["config"])})
    if d.get("board_config_sha256"):
        versions.append({"type": _own("board-config-sha256", "SHA-256 of the board file as the receiver read it"),
                         "value": d["board_config_sha256"]})
    device = {
        "resourceType": "Device",
        "id": key.id,
        "meta": {"profile": [PHD_PROFILE + "PhdDevice"]},
        "identifier": identifiers,
        "manufacturer": d.get("manufacturer") or UNKNOWN,
        "deviceName": [{"name": v.device, "type": "user-friendly-name"}],
        "modelNumber": d.get("model") or d.get("board") or UNKNOWN,
        "type": _mdc(65573, "MDC_MOC_VMS_MDS_SIMP", "Personal health device"),
        "specialization": [PULSE_OXIMETER],
        "version": versions,
    }
    properties = (_sensor_properties(d["sensor"]) if d.get("sensor") else []) + \
        (_calibration_properties(d["calibration"]) if d.get("calibration") else [])
    if properties:
        device["property"] = properties
    return device, key


def gateway_resource() -> tuple[dict, Key]:
    key = gateway_key()
    return {
        "resourceType": "Device",
        "id": key.id,
        "meta": {"profile": [PHD_PROFILE + "PhgDevice"]},
        "identifier": [{"system": key.system, "value": key.value}],
        "manufacturer": "oxilink project",
        "modelNumber": "oxilink receiver",
        "type": _mdc(531981, "MDC_MOC_VMS_MDS_AHD", "Personal health gateway"),
        "specialization": [PULSE_OXIMETER],
        "version": [{"type": _mdc(531975, "MDC_ID_PROD_SPEC_SW", "Software revision"), "value": __version__}],
    }, key
