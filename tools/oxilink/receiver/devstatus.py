"""The firmware's quality flags as IEEE 11073 says a pulse oximeter reports them: MDC_PULS_OXIM_DEV_STATUS
(150604), an ASN.1 BITS-16 measurement of the IEEE 11073-10404 pulse-oximeter specialization.

The PHD IG (STU 2) maps a BITS value to FHIR as one Observation.component per reported bit, coded
`<MDC code>.<bit>` in http://terminology.hl7.org/CodeSystem/ASN1ToHL7 with valueBoolean; bit 0 is the most
significant bit of the 16. Every 150604 bit is an *event*, so only set bits are reported. The table below is
that code system's 150604 entries; FLAG_BITS is the mapping argued for, flag by flag, in docs/fhir.md.
"""

from __future__ import annotations

from ..firmware_facts import quality_flags

MDC_PULS_OXIM_DEV_STATUS = 150604
ASN1_SYSTEM = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"

DEV_STATUS_BITS = {
    0: "sensor-disconnected",
    1: "sensor-malfunction",
    2: "sensor-displaced",
    3: "sensor-unsupported",
    4: "sensor-off",
    5: "sensor-interference",
    6: "signal-searching",
    7: "signal-pulse-questionable",
    8: "signal-non-pulsatile",
    9: "signal-erratic",
    10: "signal-low-perfusion",
    11: "signal-poor",
    12: "signal-inadequate",
    13: "signal-processing-irregularity",
    14: "device-equipment-malfunction",
    15: "device-extended-update",
}

# firmware flag name (firmware/vitals.py REASONS) -> 150604 bit, or None where no bit says the same thing.
FLAG_BITS: dict[str, int | None] = {
    "no_finger": 4,  # sensor-off: nothing on the sensor
    "saturated": 5,  # sensor-interference: the photodiode is flooded (ambient light, LED current too high)
    "motion": 7,  # signal-pulse-questionable
    "low_perfusion": 10,  # signal-low-perfusion
    "irregular": None,  # a finding about the rhythm, not the signal or the sensor: the value is still reported
    "warming_up": 6,  # signal-searching
    "channels_swapped": 3,  # sensor-unsupported: a module whose red and IR LEDs are the other way round
    "lost": None,  # the device lost that second's samples (FIFO overflow): nothing about the sensor or the signal
}


def bit_code(bit: int) -> str:
    return f"{MDC_PULS_OXIM_DEV_STATUS}.{bit}"


def status_bits(quality: int) -> list[int]:
    """The 150604 bits a quality mask sets, in bit order."""
    return sorted({b for bit, name in quality_flags() if quality & bit and (b := FLAG_BITS.get(name)) is not None})


def unmapped_flags(quality: int) -> list[str]:
    """Flags in the mask that no 150604 bit carries: named flags, then undefined bits as 0x.. hex."""
    flags = quality_flags()
    known = sum(bit for bit, _ in flags)
    names = [name for bit, name in flags if quality & bit and FLAG_BITS.get(name) is None]
    return names + ([f"0x{quality & ~known:x}"] if quality & ~known else [])


def bits16(bits: list[int]) -> int:
    """The BITS-16 value an 11073 agent would send (MDER: bit 0 is the most significant bit)."""
    return sum(1 << (15 - b) for b in set(bits))
