"""AES-CCM on the MicroPython unix port (firmware/aesccm.py): RFC 3610 and NIST SP 800-38C vectors, and
agreement with `cryptography`'s AESCCM on random inputs in both directions."""

from __future__ import annotations

import json
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

# RFC 3610 section 8, packet vectors #1-#24: (key, nonce, header = AAD, payload, ciphertext || tag, M).
RFC3610_KEY_A = "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF"
RFC3610_KEY_B = "D7828D13B2B0BDC325A76236DF93CC6B"
RFC3610 = [
    (RFC3610_KEY_A, "00000003020100A0A1A2A3A4A5", "0001020304050607",
     "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E",
     "588C979A61C663D2F066D0C2C0F989806D5F6B61DAC38417E8D12CFDF926E0", 8),
    (RFC3610_KEY_A, "00000004030201A0A1A2A3A4A5", "0001020304050607",
     "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "72C91A36E135F8CF291CA894085C87E3CC15C439C9E43A3BA091D56E10400916", 8),
    (RFC3610_KEY_A, "00000005040302A0A1A2A3A4A5", "0001020304050607",
     "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20",
     "51B1E5F44A197D1DA46B0F8E2D282AE871E838BB64DA8596574ADAA76FBD9FB0C5", 8),
    (RFC3610_KEY_A, "00000006050403A0A1A2A3A4A5", "000102030405060708090A0B",
     "0C0D0E0F101112131415161718191A1B1C1D1E",
     "A28C6865939A9A79FAAA5C4C2A9D4A91CDAC8C96C861B9C9E61EF1", 8),
    (RFC3610_KEY_A, "00000007060504A0A1A2A3A4A5", "000102030405060708090A0B",
     "0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "DCF1FB7B5D9E23FB9D4E131253658AD86EBDCA3E51E83F077D9C2D93", 8),
    (RFC3610_KEY_A, "00000008070605A0A1A2A3A4A5", "000102030405060708090A0B",
     "0C0D0E0F101112131415161718191A1B1C1D1E1F20",
     "6FC1B011F006568B5171A42D953D469B2570A4BD87405A0443AC91CB94", 8),
    (RFC3610_KEY_A, "00000009080706A0A1A2A3A4A5", "0001020304050607",
     "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E",
     "0135D1B2C95F41D5D1D4FEC185D166B8094E999DFED96C048C56602C97ACBB7490", 10),
    (RFC3610_KEY_A, "0000000A090807A0A1A2A3A4A5", "0001020304050607",
     "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "7B75399AC0831DD2F0BBD75879A2FD8F6CAE6B6CD9B7DB24C17B4433F434963F34B4", 10),
    (RFC3610_KEY_A, "0000000B0A0908A0A1A2A3A4A5", "0001020304050607",
     "08090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F20",
     "82531A60CC24945A4B8279181AB5C84DF21CE7F9B73F42E197EA9C07E56B5EB17E5F4E", 10),
    (RFC3610_KEY_A, "0000000C0B0A09A0A1A2A3A4A5", "000102030405060708090A0B",
     "0C0D0E0F101112131415161718191A1B1C1D1E",
     "07342594157785152B074098330ABB141B947B566AA9406B4D999988DD", 10),
    (RFC3610_KEY_A, "0000000D0C0B0AA0A1A2A3A4A5", "000102030405060708090A0B",
     "0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "676BB20380B0E301E8AB79590A396DA78B834934F53AA2E9107A8B6C022C", 10),
    (RFC3610_KEY_A, "0000000E0D0C0BA0A1A2A3A4A5", "000102030405060708090A0B",
     "0C0D0E0F101112131415161718191A1B1C1D1E1F20",
     "C0FFA0D6F05BDB67F24D43A4338D2AA4BED7B20E43CD1AA31662E7AD65D6DB", 10),
    (RFC3610_KEY_B, "00412B4EA9CDBE3C9696766CFA", "0BE1A88BACE018B1",
     "08E8CF97D820EA258460E96AD9CF5289054D895CEAC47C",
     "4CB97F86A2A4689A877947AB8091EF5386A6FFBDD080F8E78CF7CB0CDDD7B3", 8),
    (RFC3610_KEY_B, "0033568EF7B2633C9696766CFA", "63018F76DC8A1BCB",
     "9020EA6F91BDD85AFA0039BA4BAFF9BFB79C7028949CD0EC",
     "4CCB1E7CA981BEFAA0726C55D378061298C85C92814ABC33C52EE81D7D77C08A", 8),
    (RFC3610_KEY_B, "00103FE41336713C9696766CFA", "AA6CFA36CAE86B40",
     "B916E0EACC1C00D7DCEC68EC0B3BBB1A02DE8A2D1AA346132E",
     "B1D23A2220DDC0AC900D9AA03C61FCF4A559A4417767089708A776796EDB723506", 8),
    (RFC3610_KEY_B, "00764C63B8058E3C9696766CFA", "D0D0735C531E1BECF049C244",
     "12DAAC5630EFA5396F770CE1A66B21F7B2101C",
     "14D253C3967B70609B7CBB7C499160283245269A6F49975BCADEAF", 8),
    (RFC3610_KEY_B, "00F8B678094E3B3C9696766CFA", "77B60F011C03E1525899BCAE",
     "E88B6A46C78D63E52EB8C546EFB5DE6F75E9CC0D",
     "5545FF1A085EE2EFBF52B2E04BEE1E2336C73E3F762C0C7744FE7E3C", 8),
    (RFC3610_KEY_B, "00D560912D3F703C9696766CFA", "CD9044D2B71FDB8120EA60C0",
     "6435ACBAFB11A82E2F071D7CA4A5EBD93A803BA87F",
     "009769ECABDF48625594C59251E6035722675E04C847099E5AE0704551", 8),
    (RFC3610_KEY_B, "0042FFF8F1951C3C9696766CFA", "D85BC7E69F944FB8",
     "8A19B950BCF71A018E5E6701C91787659809D67DBEDD18",
     "BC218DAA947427B6DB386A99AC1AEF23ADE0B52939CB6A637CF9BEC2408897C6BA", 10),
    (RFC3610_KEY_B, "00920F40E56CDC3C9696766CFA", "74A0EBC9069F5B37",
     "1761433C37C5A35FC1F39F406302EB907C6163BE38C98437",
     "5810E6FD25874022E80361A478E3E9CF484AB04F447EFFF6F0A477CC2FC9BF548944", 10),
    (RFC3610_KEY_B, "0027CA0C7120BC3C9696766CFA", "44A3AA3AAE6475CA",
     "A434A8E58500C6E41530538862D686EA9E81301B5AE4226BFA",
     "F2BEED7BC5098E83FEB5B31608F8E29C38819A89C8E776F1544D4151A4ED3A8B87B9CE", 10),
    (RFC3610_KEY_B, "005B8CCBCD9AF83C9696766CFA", "EC46BB63B02520C33C49FD70",
     "B96B49E21D621741632875DB7F6C9243D2D7C2",
     "31D750A09DA3ED7FDDD49A2032AABF17EC8EBF7D22C8088C666BE5C197", 10),
    (RFC3610_KEY_B, "003EBE94044B9A3C9696766CFA", "47A65AC78B3D594227E85E71",
     "E2FCFBB880442C731BF95167C8FFD7895E337076",
     "E882F1DBD38CE3EDA7C23F04DD65071EB41342ACDF7E00DCCEC7AE52987D", 10),
    (RFC3610_KEY_B, "008D493B30AE8B3C9696766CFA", "6E37A6EF546D955D34AB6059",
     "ABF21C0B02FEB88F856DF4A37381BCE3CC128517D4",
     "F32905B88A641B04B9C9FFB58CC390900F3DA12AB16DCE9E82EFA16DA62059", 10),
]

# NIST SP 800-38C appendix C, examples 1-4 (K = 40..4f). Example 4's AAD is 00..ff repeated to 65536 bytes,
# which exercises the 0xFF 0xFE + 32-bit AAD length encoding; it is built in the MicroPython script.
NIST_KEY = "404142434445464748494a4b4c4d4e4f"
NIST = [
    ("10111213141516", "0001020304050607", "20212223", "7162015b4dac255d", 4),
    ("1011121314151617", "000102030405060708090a0b0c0d0e0f", "202122232425262728292a2b2c2d2e2f",
     "d2a1f0e051ea5f62081a7792073d593d1fc64fbfaccd", 6),
    ("101112131415161718191a1b", "000102030405060708090a0b0c0d0e0f10111213",
     "202122232425262728292a2b2c2d2e2f3031323334353637",
     "e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951", 8),
    ("101112131415161718191a1b1c", "EXAMPLE4",
     "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
     "69915dad1e84c6376a68c2967e4dab615ae0fd1faec44cc484828529463ccf72b4ac6bec93e8598e7f0dadbcea5b", 14),
]
NIST_EXAMPLE4_AAD = bytes(range(256)) * 256

# Runs each case through AesCcm: encrypt must give `expect`, decrypt must give the plaintext back, and a
# flipped last byte must raise AuthError. Prints one JSON line of {ct, pt, rejected} per case.
MP_RUN_CASES = """
import binascii, json
from aesccm import AesCcm, AuthError

def h(s):
    return binascii.unhexlify(s)

cases = json.loads(CASES)
out = []
for key, nonce, aad, pt, tag_len in cases:
    aad = bytes(range(256)) * 256 if aad == "EXAMPLE4" else h(aad)
    ccm = AesCcm(h(key), tag_len=tag_len, nonce_len=len(nonce) // 2, max_data=max(len(pt) // 2, 1),
                 max_aad=max(len(aad), 1))
    sealed = ccm.encrypt(h(nonce), h(pt), aad)
    opened = ccm.decrypt(h(nonce), sealed, aad)
    bad = bytearray(sealed)
    bad[-1] ^= 1
    try:
        ccm.decrypt(h(nonce), bad, aad)
        rejected = False
    except AuthError:
        rejected = True
    out.append({"ct": binascii.hexlify(sealed).decode(), "pt": binascii.hexlify(opened).decode(),
                "rejected": rejected})
print(json.dumps(out))
"""


def run_cases(mp, cases: list[tuple[str, str, str, str, int]]) -> list[dict]:
    return mp.json(f"CASES = {json.dumps(json.dumps(cases))}\n" + MP_RUN_CASES)


def test_rfc3610_table_matches_cryptography() -> None:
    """Guards the transcription of the table itself against an independent implementation."""
    for key, nonce, aad, pt, ct, m in RFC3610:
        got = AESCCM(bytes.fromhex(key), tag_length=m).encrypt(bytes.fromhex(nonce), bytes.fromhex(pt),
                                                                bytes.fromhex(aad))
        assert got.hex() == ct.lower()


def test_rfc3610_packet_vectors(mp) -> None:
    results = run_cases(mp, [(k, n, a, p, m) for k, n, a, p, _, m in RFC3610])
    assert len(results) == 24
    for (_, _, _, pt, ct, _), r in zip(RFC3610, results, strict=True):
        assert r["ct"] == ct.lower()
        assert r["pt"] == pt.lower()
        assert r["rejected"]


def test_nist_sp800_38c_examples(mp) -> None:
    results = run_cases(mp, [(NIST_KEY, n, a, p, t) for n, a, p, _, t in NIST])
    for (_, _, pt, ct, _), r in zip(NIST, results, strict=True):
        assert r["ct"] == ct
        assert r["pt"] == pt
        assert r["rejected"]


def _random_cases(seed: int, count: int) -> list[tuple[bytes, bytes, bytes, bytes, int]]:
    rng = random.Random(seed)
    lengths = [0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 300]
    cases = []
    for i in range(count):
        key = rng.randbytes(rng.choice([16, 32]))
        nonce = rng.randbytes(13 if i % 2 == 0 else rng.randint(7, 13))
        aad = rng.randbytes(rng.choice(lengths + [rng.randint(0, 400)]))
        pt = rng.randbytes(rng.choice(lengths + [rng.randint(0, 600)]))
        cases.append((key, nonce, aad, pt, rng.choice([4, 6, 8, 10, 12, 14, 16])))
    return cases


def test_encrypt_agrees_with_cryptography(mp) -> None:
    cases = _random_cases(seed=3610, count=120)
    results = run_cases(mp, [(k.hex(), n.hex(), a.hex(), p.hex(), t) for k, n, a, p, t in cases])
    for (key, nonce, aad, pt, tag_len), r in zip(cases, results, strict=True):
        want = AESCCM(key, tag_length=tag_len).encrypt(nonce, pt, aad)
        assert r["ct"] == want.hex(), (len(pt), len(aad), len(nonce), tag_len)
        assert r["pt"] == pt.hex()
        assert r["rejected"]


def test_decrypts_what_cryptography_sealed(mp) -> None:
    cases = _random_cases(seed=38, count=40)
    sealed = [AESCCM(k, tag_length=t).encrypt(n, p, a).hex() for k, n, a, p, t in cases]
    payload = [(k.hex(), n.hex(), a.hex(), s, t) for (k, n, a, _, t), s in zip(cases, sealed, strict=True)]
    out = mp.json(f"CASES = {json.dumps(payload)}\n" + """
import binascii, json
from aesccm import AesCcm
h = binascii.unhexlify
res = []
for key, nonce, aad, sealed, tag_len in CASES:
    ccm = AesCcm(h(key), tag_len=tag_len, nonce_len=len(nonce) // 2, max_data=1024, max_aad=1024)
    res.append(binascii.hexlify(ccm.decrypt(h(nonce), h(sealed), h(aad))).decode())
print(json.dumps(res))
""")
    assert out == [p.hex() for _, _, _, p, _ in cases]


def test_every_tampering_is_rejected_and_plaintext_withheld(mp) -> None:
    out = mp.json("""
from aesccm import AesCcm, AuthError
from mptest import report
key = bytes(range(16)); nonce = bytes(range(13)); aad = b"oxilink/dev-1/vitals"; pt = bytes(range(40))
ccm = AesCcm(key, max_data=64, max_aad=64)
sealed = ccm.encrypt(nonce, pt, aad)
accepted = 0
leaked = 0
out = bytearray(len(pt))
for bit in range(len(sealed) * 8):
    bad = bytearray(sealed)
    bad[bit // 8] ^= 1 << (bit % 8)
    out[:] = b"\\xaa" * len(pt)
    try:
        ccm.decrypt_into(nonce, bad, aad, out)
        accepted += 1
    except AuthError:
        leaked += out != bytearray(len(pt))
wrong = 0
for n2, a2 in ((bytes(12) + b"\\x01", aad), (nonce, aad + b"x"), (nonce, b"")):
    try:
        ccm.decrypt(n2, sealed, a2)
    except AuthError:
        wrong += 1
short = 0
try:
    ccm.decrypt(nonce, sealed[:15], aad)
except AuthError:
    short = 1
report(bits=len(sealed) * 8, accepted=accepted, leaked=leaked, wrong_rejected=wrong, short=short)
""")
    assert out == {"bits": 56 * 8, "accepted": 0, "leaked": 0, "wrong_rejected": 3, "short": 1}


def test_in_place_and_reuse(mp) -> None:
    """encrypt_into may overwrite its input, and one AesCcm seals many messages of different lengths."""
    key, nonce, aad = bytes(range(16)), bytes(range(13)), b"topic"
    out = mp.json("""
import binascii, json
from aesccm import AesCcm
ccm = AesCcm(bytes(range(16)), max_data=100, max_aad=16)
res = []
for n in (100, 3, 0, 47):
    buf = bytearray(n + 16)
    buf[:n] = bytes((i * 7) & 255 for i in range(n))
    ccm.encrypt_into(bytes(range(13)), memoryview(buf)[:n], b"topic", buf)
    res.append(binascii.hexlify(buf).decode())
print(json.dumps(res))
""")
    for n, got in zip((100, 3, 0, 47), out, strict=True):
        pt = bytes((i * 7) & 255 for i in range(n))
        assert got == AESCCM(key, tag_length=16).encrypt(nonce, pt, aad).hex()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ("key=bytes(15)", "16 or 32"),
        ("key=bytes(16), tag_len=5", "tag_len"),
        ("key=bytes(16), nonce_len=6", "nonce_len"),
        ("key=bytes(16), nonce_len=13, max_data=70000", "too long"),
    ],
)
def test_bad_parameters_are_named(mp, kwargs: str, message: str) -> None:
    out = mp.json(f"""
from aesccm import AesCcm
from mptest import report
try:
    AesCcm({kwargs})
    report(err=None)
except ValueError as e:
    report(err=str(e))
""")
    assert out["err"] and message in out["err"]


def test_length_limits_enforced(mp) -> None:
    out = mp.json("""
from aesccm import AesCcm
from mptest import report
ccm = AesCcm(bytes(16), max_data=32, max_aad=8)
errs = []
for nonce, data, aad in ((bytes(12), b"", b""), (bytes(13), bytes(33), b""), (bytes(13), b"", bytes(9))):
    try:
        ccm.encrypt(nonce, data, aad)
        errs.append(None)
    except ValueError as e:
        errs.append(str(e))
report(errs=errs)
""")
    assert [("nonce" in e, "max_data" in e, "max_aad" in e) for e in out["errs"]] == [
        (True, False, False), (False, True, False), (False, False, True)]
