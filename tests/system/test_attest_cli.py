"""System tests for `seeswarm attest verify` and `seeswarm attest import`.

They run the real binary (SEESWARM_BIN, default build/seeswarm) on the real
vectors in $SEESWARM_VECTORS (default <repo>/../shared/vectors), read in place.
Formats whose verifier is not built in, or whose vectors are missing, are
skipped with the reason.

TPM: no vector can go through the "tpm" verifier as is, because it takes the
SSTPM001 container with the AK as a TPM2B_PUBLIC (whose name must equal the
quote's qualifiedSigner) and the vectors only carry the AK as an SPKI. So the
TPM tests build a container here with a software AK (RSA-2048, the documented
layout in docs/attestation-tpm.md) and a policy with require_ek_cert false
(the documented out-of-band AK trust, status "warning"). The real TPM vectors
are covered by the unit tests (tpm_verify_quote), not by the CLI.
"""
import hashlib
import json
import os
import stat
import struct
import subprocess

import pytest

BIN = os.environ.get("SEESWARM_BIN") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "seeswarm"))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VECTORS = os.environ.get("SEESWARM_VECTORS") or os.path.join(REPO, "..", "shared", "vectors")


def vec(fmt, name):
    path = os.path.join(VECTORS, fmt, name)
    if not os.path.exists(path):
        pytest.skip(f"vector {fmt}/{name} not found under {VECTORS} (set SEESWARM_VECTORS)")
    return path


def run(*args, check_usage=True):
    if not os.path.exists(BIN):
        pytest.skip(f"no seeswarm binary at {BIN}")
    p = subprocess.run([BIN, "attest", *args], capture_output=True, text=True, timeout=60)
    if check_usage and p.returncode == 2 and "unknown or not built-in evidence type" in p.stderr:
        pytest.skip(p.stderr.strip())
    return p


def verify_json(*args):
    p = run("verify", "--json", *args)
    assert p.returncode in (0, 1), f"exit {p.returncode}: {p.stderr}"
    return p.returncode, json.loads(p.stdout)


def canonical_digest(claims):
    canon = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def flipped(src, tmp_path, offset, name="flipped.bin"):
    data = bytearray(open(src, "rb").read())
    data[offset] ^= 0x01
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return str(out)


def write_policy(tmp_path, doc, name="policy.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return str(p)


def assert_modes(root):
    for dirpath, dirnames, filenames in os.walk(root):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for f in filenames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o644, f


# ---- usage --------------------------------------------------------------------


def test_usage_errors(tmp_path):
    assert run().returncode == 2
    assert run("verify").returncode == 2
    p = run("verify", "--type", "nosuch", "--evidence", "/dev/null", check_usage=False)
    assert p.returncode == 2
    assert "available:" in p.stderr and "sim" in p.stderr
    ev = tmp_path / "sim.bin"
    ev.write_bytes(b"SSSIM001" + bytes(32))
    p = run("verify", "--type", "sim", "--evidence", str(ev), "--nonce", "zz")
    assert p.returncode == 2 and "--nonce" in p.stderr
    p = run("verify", "--type", "sim", "--evidence", str(ev), "--nonce", "00" * 65)
    assert p.returncode == 2
    p = run("verify", "--type", "sim", "--evidence", str(ev), "--at", "yesterday")
    assert p.returncode == 2 and "RFC 3339" in p.stderr
    p = run("verify", "--type", "sim", "--evidence", str(tmp_path / "missing"))
    assert p.returncode == 2
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(1024 * 1024 + 1))
    p = run("verify", "--type", "sim", "--evidence", str(big))
    assert p.returncode == 2 and "1 MiB" in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    p = run("verify", "--type", "sim", "--evidence", str(ev), "--policy", str(bad))
    assert p.returncode == 2
    assert run("import", "--collateral", str(tmp_path / "c")).returncode == 2
    assert run("bogus").returncode == 2


def test_sim_roundtrip(tmp_path):
    nonce = bytes(range(32))
    ev = tmp_path / "sim.bin"
    ev.write_bytes(b"SSSIM001" + nonce)
    rc, out = verify_json("--type", "sim", "--evidence", str(ev), "--nonce", nonce.hex())
    assert rc == 0 and out["verified"] is True and out["type"] == "sim"
    assert out["hardware"] is False
    assert out["claims"]["tee"] == "sim"
    assert out["claims_digest"] == canonical_digest(out["claims"])
    rc, out = verify_json("--type", "sim", "--evidence", str(ev), "--nonce", "ff" * 32)
    assert rc == 1 and out["verified"] is False and out["status"] == "failed"
    p = run("verify", "--type", "sim", "--evidence", str(ev))
    assert p.returncode == 0 and "appraisal: " in p.stdout and "tee: sim" in p.stdout


# ---- SEV-SNP ------------------------------------------------------------------

SNP_AT = "2025-06-01T00:00:00Z"
SNP_MEASUREMENT = ("b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b"
                   "6bdf8a9ece31a5a608eb0cf2e4872b01")
SNP_CHIP = ("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b7"
            "6a1936776b564ea464cdce40c05f63c9b610c5068b006b5d")


def snp_args():
    return ["--type", "sev-snp", "--evidence", vec("sev-snp", "milan_gosevguest_report.bin"),
            "--certs", vec("sev-snp", "milan_gosevguest_vcek.der"),
            "--certs", vec("sev-snp", "ask_milan.pem"), "--certs", vec("sev-snp", "ark_milan.pem")]


def test_snp_reference_vector():
    rc, out = verify_json(*snp_args(), "--at", SNP_AT, "--nonce", "0102030405")
    assert rc == 0, out
    assert out["verified"] is True and out["status"] == "affirming"
    c = out["claims"]
    assert c["tee"] == "sev-snp"
    assert c["measurement"] == SNP_MEASUREMENT
    assert c["chip_id"] == SNP_CHIP
    assert c["report_data"] == "0102030405" + "00" * 59
    assert c["reported_tcb"]["raw"] == "0x4405000000000002"
    assert (c["reported_tcb"]["bootloader"], c["reported_tcb"]["snp"],
            c["reported_tcb"]["microcode"]) == (2, 5, 68)
    assert c["version"] == 2 and c["vmpl"] == 0
    assert out["claims_digest"] == canonical_digest(c)
    # Human output carries the same facts.
    p = run("verify", *snp_args(), "--at", SNP_AT)
    assert p.returncode == 0
    assert "appraisal: affirming" in p.stdout
    assert f"measurement: {SNP_MEASUREMENT}" in p.stdout
    assert "  reported_tcb:\n" in p.stdout and "    microcode: 68\n" in p.stdout


def test_snp_pem_chain_file():
    # One PEM file with VCEK, ASK and ARK (the Azure vector).
    rc, out = verify_json("--type", "sev-snp", "--evidence",
                          vec("sev-snp", "milan_azure_report.bin"), "--certs",
                          vec("sev-snp", "milan_azure_vcek_chain.pem"), "--at", SNP_AT)
    assert rc == 0, out
    assert out["claims"]["measurement"].startswith("9ac48fcac8a2d88a")


def test_snp_flipped_byte(tmp_path):
    args = snp_args()
    args[3] = flipped(args[3], tmp_path, 0x50)  # inside REPORT_DATA: signed body
    rc, out = verify_json(*args, "--at", SNP_AT)
    assert rc == 1 and out["verified"] is False
    assert "VCEK signature over the report does not verify" in out["reasons"]
    p = run("verify", *args, "--at", SNP_AT)
    assert p.returncode == 1
    assert "verification failed: VCEK signature over the report does not verify" in p.stdout


def test_snp_wrong_nonce():
    rc, out = verify_json(*snp_args(), "--at", SNP_AT, "--nonce", "0102030406")
    assert rc == 1 and "report_data does not match" in out["reasons"]
    # Right prefix but the rest of REPORT_DATA is not what the nonce implies.
    rc, out = verify_json(*snp_args(), "--at", SNP_AT, "--nonce", "010203040501")
    assert rc == 1


def test_snp_policy_mismatch(tmp_path):
    pol = write_policy(tmp_path, {"sev-snp": {"measurements": ["00" * 48], "allow_debug": True}})
    rc, out = verify_json(*snp_args(), "--at", SNP_AT, "--policy", pol)
    assert rc == 1 and out["verified"] is True and out["status"] == "contraindicated"
    assert "measurement" in out["reasons"].lower()
    p = run("verify", *snp_args(), "--at", SNP_AT, "--policy", pol)
    assert p.returncode == 1 and "appraisal: contraindicated" in p.stdout
    # The whole document is the policy when it has no "sev-snp" key.
    ok = write_policy(tmp_path, {"measurements": [SNP_MEASUREMENT], "allow_debug": True}, "ok.json")
    rc, out = verify_json(*snp_args(), "--at", SNP_AT, "--policy", ok)
    assert rc == 0 and out["status"] == "affirming"
    # The vector allows debug: a policy that forbids it is contraindicated.
    nodebug = write_policy(tmp_path, {"measurements": [SNP_MEASUREMENT]}, "nodebug.json")
    rc, out = verify_json(*snp_args(), "--at", SNP_AT, "--policy", nodebug)
    assert rc == 1 and out["status"] == "contraindicated"
    typo = write_policy(tmp_path, {"sev-snp": {"measurments": []}}, "typo.json")
    p = run("verify", *snp_args(), "--at", SNP_AT, "--policy", typo)
    assert p.returncode == 2 and "measurments" in p.stderr


def test_snp_expired():
    # The VCEK is valid until 2029-09-24.
    rc, out = verify_json(*snp_args(), "--at", "2030-01-01T00:00:00Z")
    assert rc == 1 and "expired" in out["reasons"] and "SEV-VCEK" in out["reasons"]
    # The VLEK expired on 2025-12-10: "now" in the project's tests is 2026-11-23.
    rc, out = verify_json("--type", "sev-snp", "--evidence",
                          vec("sev-snp", "milan_trustee_vlek_report.bin"), "--certs",
                          vec("sev-snp", "milan_trustee_vlek.der"), "--certs",
                          vec("sev-snp", "asvk_milan.pem"), "--certs",
                          vec("sev-snp", "ark_milan.pem"), "--at", "2026-11-23T00:00:00Z")
    assert rc == 1 and "expired" in out["reasons"]


def test_snp_import_roundtrip(tmp_path):
    coll = tmp_path / "coll"
    d = lambda n: vec("sev-snp", n)  # noqa: E731
    # Without collateral, the VCEK cannot be found.
    rc, out = verify_json("--type", "sev-snp", "--evidence", d("milan_gosevguest_report.bin"),
                          "--collateral", str(coll), "--at", SNP_AT)
    assert rc == 1
    p = run("import", "--collateral", str(coll), "--amd-certs", d("ark_milan.pem"),
            d("ask_milan.pem"), d("asvk_milan.pem"), d("ark_genoa.pem"),
            "--amd-certs", d("milan_gosevguest_vcek.der"))
    assert p.returncode == 0, p.stderr
    assert (coll / "amd" / "milan" / "ark.pem").exists()
    assert (coll / "amd" / "milan" / "ask.pem").exists()
    assert (coll / "amd" / "milan" / "asvk.pem").exists()
    assert (coll / "amd" / "genoa" / "ark.pem").exists()
    assert (coll / "amd" / "vcek" / f"{SNP_CHIP}-4405000000000002.der").read_bytes() == \
        open(d("milan_gosevguest_vcek.der"), "rb").read()
    assert_modes(coll)
    rc, out = verify_json("--type", "sev-snp", "--evidence", d("milan_gosevguest_report.bin"),
                          "--collateral", str(coll), "--at", SNP_AT, "--nonce", "0102030405")
    assert rc == 0 and out["status"] == "affirming", out
    # The VLEK chain through the imported ASVK (the VLEK itself comes with the evidence).
    rc, out = verify_json("--type", "sev-snp", "--evidence", d("milan_trustee_vlek_report.bin"),
                          "--certs", d("milan_trustee_vlek.der"), "--collateral", str(coll),
                          "--at", SNP_AT)
    assert rc == 0 and out["claims"]["signing_key"] == "vlek", out
    # Unknown inputs are refused and nothing is written.
    before = sorted(os.listdir(coll / "amd"))
    p = run("import", "--collateral", str(coll), "--amd-certs", d("ask_genoa.pem"),
            vec("sgx", "intel_sgx_root_ca.pem"))
    assert p.returncode == 1 and "not an AMD ARK, ASK, ASVK or VCEK" in p.stderr
    assert not (coll / "amd" / "genoa" / "ask.pem").exists()
    assert sorted(os.listdir(coll / "amd")) == before
    p = run("import", "--collateral", str(coll), "--amd-certs", d("milan_trustee_vlek.der"))
    assert p.returncode == 1 and "VLEK" in p.stderr
    p = run("import", "--collateral", str(coll), "--amd-certs", d("turin_virtee_vcek.der"))
    assert p.returncode == 1 and "hwID" in p.stderr


# ---- TDX / SGX (DCAP) ---------------------------------------------------------

TDX_AT = "2025-07-19T10:00:34Z"
SGX_AT = "2025-07-19T10:01:17Z"
TDX_MRTD = ("91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407"
            "de03ae6dc5f87f27428b2538873118b7")
TDX_REPORT_DATA = ("9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9"
                   "eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20")


@pytest.fixture
def dcap_coll(tmp_path):
    coll = tmp_path / "dcap"
    p = run("import", "--collateral", str(coll),
            "--dcap-collateral", vec("tdx", "dcapqvl_tdx_quote_collateral.json"),
            vec("sgx", "dcapqvl_sgx_quote_collateral.json"))
    assert p.returncode == 0, p.stderr
    assert_modes(coll)
    return coll


def test_tdx_reference_vector(dcap_coll):
    quote = vec("tdx", "dcapqvl_tdx_quote.dat")
    rc, out = verify_json("--type", "tdx", "--evidence", quote, "--collateral", str(dcap_coll),
                          "--at", TDX_AT, "--nonce", TDX_REPORT_DATA)
    assert rc == 0, out
    assert out["status"] == "affirming"
    c = out["claims"]
    assert c["tee"] == "tdx" and c["tcb_status"] == "UpToDate"
    assert c["mrtd"] == TDX_MRTD and c["report_data"] == TDX_REPORT_DATA
    assert c["fmspc"].lower() == "b0c06f000000"
    assert out["claims_digest"] == canonical_digest(c)


def test_tdx_negatives(tmp_path, dcap_coll):
    quote = vec("tdx", "dcapqvl_tdx_quote.dat")
    base = ["--type", "tdx", "--collateral", str(dcap_coll)]
    rc, out = verify_json(*base, "--evidence", flipped(quote, tmp_path, 0x3C), "--at", TDX_AT)
    assert rc == 1 and "quote signature by the attestation key does not verify" in out["reasons"]
    rc, out = verify_json(*base, "--evidence", quote, "--at", TDX_AT, "--nonce", "00" * 32)
    assert rc == 1 and "report_data does not match" in out["reasons"]
    pol = write_policy(tmp_path, {"tdx": {"mrtd": ["00" * 48]}})
    rc, out = verify_json(*base, "--evidence", quote, "--at", TDX_AT, "--policy", pol)
    assert rc == 1 and out["verified"] and out["status"] == "contraindicated"
    assert "mrtd" in out["reasons"]
    # The PCK leaf expires 2032-02-06.
    rc, out = verify_json(*base, "--evidence", quote, "--at", "2032-03-01T00:00:00Z")
    assert rc == 1 and "expired" in out["reasons"]
    # Collateral is only valid for a month: a day later the PCK CRL has expired.
    rc, out = verify_json(*base, "--evidence", quote, "--at", "2025-07-20T00:00:00Z")
    assert rc == 1 and "expired" in out["reasons"]
    # A flipped byte in the imported TCB Info breaks its signature.
    tcb = dcap_coll / "intel" / "tcb_info_tdx" / "b0c06f000000.json"
    text = tcb.read_text()
    tcb.write_text(text.replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18', 1))
    assert tcb.read_text() != text
    rc, out = verify_json(*base, "--evidence", quote, "--at", TDX_AT)
    assert rc == 1 and "signature" in out["reasons"].lower()


def test_sgx_reference_vector(tmp_path, dcap_coll):
    quote = vec("sgx", "dcapqvl_sgx_quote.dat")
    base = ["--type", "sgx", "--evidence", quote, "--collateral", str(dcap_coll), "--at", SGX_AT]
    nonce = b"Hello, world!".hex()
    # Default policy: only UpToDate affirms.
    rc, out = verify_json(*base, "--nonce", nonce)
    assert rc == 1 and out["verified"] and out["status"] == "contraindicated"
    c = out["claims"]
    assert c["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert c["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert c["mrenclave"] == "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    # A policy that tolerates the status as a warning: exit 0.
    warn = write_policy(tmp_path, {"sgx": {"warn_tcb_statuses": ["ConfigurationAndSWHardeningNeeded"]}})
    rc, out = verify_json(*base, "--nonce", nonce, "--policy", warn)
    assert rc == 0 and out["status"] == "warning"
    p = run("verify", *base, "--policy", warn)
    assert p.returncode == 0 and "appraisal: warning" in p.stdout
    assert "advisory_ids: INTEL-SA-00289, INTEL-SA-00615" in p.stdout
    rc, out = verify_json(*base, "--nonce", b"Hello, world?".hex(), "--policy", warn)
    assert rc == 1 and "report_data" in out["reasons"]
    bad = write_policy(tmp_path, {"sgx": {"warn_tcb_statuses": ["ConfigurationAndSWHardeningNeeded"],
                                          "mrenclave": ["00" * 32]}}, "bad.json")
    rc, out = verify_json(*base, "--policy", bad)
    assert rc == 1 and out["status"] == "contraindicated" and "mrenclave" in out["reasons"]
    rc, out = verify_json(*base[:-2], "--at", "2031-01-01T00:00:00Z", "--policy", warn)
    assert rc == 1 and "expired" in out["reasons"]
    rc, out = verify_json("--type", "sgx", "--evidence", flipped(quote, tmp_path, 48 + 64),
                          "--collateral", str(dcap_coll), "--at", SGX_AT)
    assert rc == 1 and "signature" in out["reasons"]


def test_intel_root_import(tmp_path):
    coll = tmp_path / "c"
    p = run("import", "--collateral", str(coll), "--intel-root", vec("sgx", "intel_sgx_root_ca.pem"))
    assert p.returncode == 0, p.stderr
    assert (coll / "intel" / "root_ca.pem").exists()
    p = run("import", "--collateral", str(coll), "--intel-root", vec("sev-snp", "ark_milan.pem"))
    assert p.returncode == 1


# ---- TPM (synthetic container, documented out-of-band AK trust) ---------------

def _tpm_crypto():
    try:
        from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: F401
    except ImportError:
        pytest.skip("python3-cryptography is needed to build the TPM container")


def _u16(v):
    return struct.pack(">H", v)


def _u32(v):
    return struct.pack(">I", v)


def _tpm2b(b):
    return _u16(len(b)) + b


def _rsa_public(key, attrs, sym=b"\x00\x10", scheme=b"\x00\x14\x00\x0b", policy=b""):
    """TPM2B_PUBLIC of an RSA-2048 key (nameAlg SHA-256)."""
    n = key.public_key().public_numbers().n.to_bytes(256, "big")
    tpmt = (_u16(0x0001) + _u16(0x000B) + _u32(attrs) + _tpm2b(policy) + sym + scheme +
            _u16(2048) + _u32(0) + _tpm2b(n))
    return _tpm2b(tpmt), b"\x00\x0b" + hashlib.sha256(tpmt).digest()


AK_ATTRS = 0x2 | 0x10 | 0x20 | 0x40 | 0x10000 | 0x40000      # fixedTPM fixedParent sdo uwa restricted sign
EK_ATTRS = 0x2 | 0x10 | 0x20 | 0x80 | 0x10000 | 0x20000       # fixedTPM fixedParent sdo adminWithPolicy restricted decrypt


def build_tpm(nonce, pcrs, with_ek=False):
    """Returns (container bytes, CA PEM or None): a quote of sha256 PCRs 0-23."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID
    import datetime

    ak = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ak_pub, ak_name = _rsa_public(ak, AK_ATTRS)
    # A primary key of the endorsement hierarchy: QN = H(0x4000000B || name).
    qn = b"\x00\x0b" + hashlib.sha256(bytes.fromhex("4000000b") + ak_name).digest()
    digest = hashlib.sha256(b"".join(pcrs)).digest()
    attest = (_u32(0xFF544347) + _u16(0x8018) + _tpm2b(qn) + _tpm2b(nonce) +
              struct.pack(">QIIB", 123456, 1, 0, 1) + struct.pack(">Q", 0x2019102300163636) +
              _u32(1) + _u16(0x000B) + bytes([3, 0xFF, 0xFF, 0xFF]) + _tpm2b(digest))
    sig = ak.sign(attest, padding.PKCS1v15(), hashes.SHA256())
    tpmt_sig = _u16(0x0014) + _u16(0x000B) + _tpm2b(sig)
    recs = [(1, attest), (2, tpmt_sig)]
    recs += [(3, _u16(0x000B) + bytes([i]) + v) for i, v in enumerate(pcrs)]
    recs.append((4, ak_pub))
    ca_pem = None
    if with_ek:
        ek = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ek_pub, _ = _rsa_public(ek, EK_ATTRS, sym=_u16(0x0006) + _u16(128) + _u16(0x0043),
                                scheme=_u16(0x0010), policy=bytes(32))
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test EK CA")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(1)
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                           False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        ekc = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test EK")]))
               .issuer_name(ca_name).public_key(ek.public_key()).serial_number(2)
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
               .sign(ca_key, hashes.SHA256()))
        recs.append((5, ek_pub))
        recs.append((6, ekc.public_bytes(serialization.Encoding.DER)))
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    out = b"SSTPM001" + b"".join(bytes([t]) + _tpm2b(v) for t, v in recs)
    return out, ca_pem


TPM_PCRS = [bytes(32)] * 17 + [b"\xff" * 32] * 6 + [bytes(32)]


def test_tpm_container_out_of_band_ak(tmp_path):
    _tpm_crypto()
    nonce = hashlib.sha256(b"nonce").digest()
    ev, _ = build_tpm(nonce, TPM_PCRS)
    evf = tmp_path / "tpm.bin"
    evf.write_bytes(ev)
    oob = write_policy(tmp_path, {"tpm": {"require_ek_cert": False,
                                          "pcrs": {"sha256": {"17": ["ff" * 32]}}}})
    base = ["--type", "tpm", "--evidence", str(evf), "--policy", oob, "--at", "2025-06-01T00:00:00Z"]
    rc, out = verify_json(*base, "--nonce", nonce.hex())
    assert rc == 0 and out["status"] == "warning", out
    assert "require_ek_cert" in out["reasons"]
    c = out["claims"]
    assert c["tee"] == "tpm" and c["ak_trust"] == "unverified"
    assert c["pcrs"]["sha256"]["17"] == "ff" * 32 and c["pcrs"]["sha256"]["0"] == "00" * 32
    assert c["extra_data"] == nonce.hex()
    assert out["claims_digest"] == canonical_digest(c)
    # Wrong nonce.
    rc, out = verify_json(*base, "--nonce", "00" * 32)
    assert rc == 1 and "extraData" in out["reasons"]
    # A flipped byte in TPMS_ATTEST (record 1 starts at 8 + 3; byte 40 is inside extraData).
    rc, out = verify_json("--type", "tpm", "--evidence", flipped(str(evf), tmp_path, 11 + 40),
                          "--policy", oob)
    assert rc == 1 and "AK signature" in out["reasons"] and "does not verify" in out["reasons"]
    # PCR policy mismatch.
    pol = write_policy(tmp_path, {"tpm": {"require_ek_cert": False,
                                          "pcrs": {"sha256": {"0": ["11" * 32]}}}}, "pcr.json")
    rc, out = verify_json("--type", "tpm", "--evidence", str(evf), "--policy", pol)
    assert rc == 1 and out["verified"] and out["status"] == "contraindicated"
    assert "PCR" in out["reasons"] or "pcr" in out["reasons"]
    # The default policy requires a certified EK and credential activation.
    rc, out = verify_json("--type", "tpm", "--evidence", str(evf))
    assert rc == 1 and "EK" in out["reasons"]


def test_tpm_ek_ca_import_roundtrip(tmp_path):
    """The CLI cannot complete credential activation (it needs the agent's TPM),
    so the strongest offline result is: the EK certificate chains to the
    imported CA and verification stops at the activation check."""
    _tpm_crypto()
    nonce = bytes(range(32))
    ev, ca_pem = build_tpm(nonce, TPM_PCRS, with_ek=True)
    evf = tmp_path / "tpm.bin"
    evf.write_bytes(ev)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(ca_pem)
    coll = tmp_path / "coll"
    other = tmp_path / "other"
    p = run("import", "--collateral", str(other), "--tpm-ek-ca", vec("sev-snp", "ark_milan.pem"))
    assert p.returncode == 0, p.stderr
    base = ["--type", "tpm", "--evidence", str(evf), "--at", "2025-06-01T00:00:00Z",
            "--nonce", nonce.hex()]
    rc, out = verify_json(*base, "--collateral", str(other))
    assert rc == 1 and "does not chain" in out["reasons"]
    p = run("import", "--collateral", str(coll), "--tpm-ek-ca", str(ca))
    assert p.returncode == 0, p.stderr
    files = os.listdir(coll / "tpm" / "ek-ca")
    assert len(files) == 1 and files[0].endswith(".pem")
    assert_modes(coll)
    rc, out = verify_json(*base, "--collateral", str(coll))
    assert rc == 1 and "credential activation" in out["reasons"], out
    # The EK certificate expires after a year.
    rc, out = verify_json(*base[:-4], "--at", "2026-06-01T00:00:00Z", "--collateral", str(coll),
                          "--nonce", nonce.hex())
    assert rc == 1 and "expired" in out["reasons"]
    # A leaf (non-CA) certificate is refused.
    p = run("import", "--collateral", str(coll), "--tpm-ek-ca",
            vec("sev-snp", "milan_gosevguest_vcek.der"))
    assert p.returncode == 1 and "not a CA certificate" in p.stderr
