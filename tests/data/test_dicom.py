"""DICOM conversion and writing (kse.data.dicom, tools/dicom_to_png.py).

References are written here with NumPy from the DICOM rules (PS3.3 C.11.2.1.2.1 for the
linear window), not by calling the code under test.
"""

import csv
import os
import shutil
import sys

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from keras_seg_extras.data import dicom

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _testdata(name):
    # download=False: without pydicom-data installed pydicom would fetch the file from GitHub.
    path = get_testdata_file(name, download=False)
    assert path is not None and os.path.exists(path), f"pydicom-data lacks {name}"
    return path


def _reference_window_uint8(values, center, width, monochrome1):
    """Linear VOI window (PS3.3 C.11.2.1.2.1) to 8 bits, written independently."""
    values = values.astype("float64")
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    unit = np.where(values <= low, 0.0,
                    np.where(values > high, 1.0,
                             ((values - (center - 0.5)) / (width - 1) + 0.5)))
    if monochrome1:
        unit = 1.0 - unit
    return np.round(unit * 255).astype("uint8")


# ----------------------------------------------------------------------------- real files


def test_real_chest_radiograph_matches_header_window():
    path = _testdata("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (1955, 1841)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    image = dicom.dicom_to_uint8(path)
    expected = _reference_window_uint8(ds.pixel_array, float(ds.WindowCenter),
                                       float(ds.WindowWidth), monochrome1=True)
    assert image.shape == (1955, 1841) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)
    # MONOCHROME1: the lungs (low attenuation) are dark after inversion, as on a film.
    assert image.min() < 60 and image.max() > 200


def test_compressed_variants_of_the_chest_radiograph_convert():
    lossless = {name: dicom.dicom_to_uint8(_testdata(name), size=(98, 92))
                for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm")}
    lossy = {name: dicom.dicom_to_uint8(_testdata(name), size=64)
             for name in ("RG1_UNCI.dcm", "RG1_J2KI.dcm")}
    assert lossless["RG1_UNCR.dcm"].shape == (98, 92)
    # JPEG 2000 lossless decodes to exactly the uncompressed pixels.
    np.testing.assert_array_equal(lossless["RG1_UNCR.dcm"], lossless["RG1_J2KR.dcm"])
    # RG1_UNCI is the uncompressed copy of the lossy JPEG 2000 RG1_J2KI.
    np.testing.assert_array_equal(lossy["RG1_UNCI.dcm"], lossy["RG1_J2KI.dcm"])
    assert lossy["RG1_J2KI.dcm"].shape == (64, 64)


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm"])
def test_other_transfer_syntaxes_equal_the_uncompressed_file(name):
    reference = dicom.dicom_to_uint8(_testdata("MR_small.dcm"))
    np.testing.assert_array_equal(dicom.dicom_to_uint8(_testdata(name)), reference)


def test_jpeg_lossless_process14_decodes():
    image = dicom.dicom_to_uint8(_testdata("JPGLosslessP14SV1_1s_1f_8b.dcm"),
                                 windowing="minmax")
    ds = pydicom.dcmread(_testdata("JPGLosslessP14SV1_1s_1f_8b.dcm"))
    values = ds.pixel_array.astype("float64")
    expected = np.round((values - values.min()) / (values.max() - values.min()) * 255)
    np.testing.assert_array_equal(image, expected.astype("uint8"))


def test_multiframe_is_refused_clearly():
    with pytest.raises(ValueError, match="multi-frame"):
        dicom.dicom_to_uint8(_testdata("emri_small_jpeg_2k_lossless.dcm"))


# ----------------------------------------------------------------------------- contrast


def test_monochrome1_inversion_on_a_written_file(tmp_path, rng):
    array = rng.integers(0, 4096, size=(24, 20)).astype("uint16")
    mono1, mono2 = tmp_path / "m1.dcm", tmp_path / "m2.dcm"
    dicom.write_dicom(mono1, array, photometric_interpretation="MONOCHROME1",
                      window=(2000, 3001), bits_stored=12)
    dicom.write_dicom(mono2, array, window=(2000, 3001), bits_stored=12)
    inverted = dicom.dicom_to_uint8(mono1)
    plain = dicom.dicom_to_uint8(mono2)
    np.testing.assert_array_equal(plain, _reference_window_uint8(array, 2000, 3001, False))
    np.testing.assert_array_equal(inverted, _reference_window_uint8(array, 2000, 3001, True))
    np.testing.assert_array_equal(dicom.dicom_to_uint8(mono1, invert_monochrome1=False), plain)
    assert np.any(inverted != plain)


def test_fallbacks_without_header_window(tmp_path, rng):
    array = rng.integers(100, 3000, size=(30, 26)).astype("uint16")
    path = tmp_path / "nowindow.dcm"
    dicom.write_dicom(path, array)
    values = array.astype("float64")

    low, high = np.percentile(values, [2.0, 98.0])
    expected = np.round(np.clip((values - low) / (high - low), 0, 1) * 255).astype("uint8")
    np.testing.assert_array_equal(dicom.dicom_to_uint8(path, percentiles=(2.0, 98.0)), expected)

    expected = np.round((values - values.min()) / (values.max() - values.min()) * 255)
    np.testing.assert_array_equal(dicom.dicom_to_uint8(path, fallback="minmax"),
                                  expected.astype("uint8"))
    with pytest.raises(ValueError, match="windowing='header'"):
        dicom.dicom_to_uint8(path, windowing="header")
    # An explicit window overrides everything.
    np.testing.assert_array_equal(dicom.dicom_to_uint8(path, window=(1500, 1001)),
                                  _reference_window_uint8(array, 1500, 1001, False))


def test_constant_image_gives_black_not_nan(tmp_path):
    path = tmp_path / "flat.dcm"
    dicom.write_dicom(path, np.full((8, 8), 77, "uint8"))
    np.testing.assert_array_equal(dicom.dicom_to_uint8(path), np.zeros((8, 8), "uint8"))


def test_voi_lut_sequence_is_applied(tmp_path, rng):
    array = rng.integers(0, 256, size=(16, 16)).astype("uint8")
    path = tmp_path / "lut.dcm"
    dicom.write_dicom(path, array)
    ds = pydicom.dcmread(path)
    lut = (np.sqrt(np.arange(256) / 255.0) * 255).astype("uint16")  # a gamma-like LUT
    item = pydicom.Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new("LUTData", "US", lut.tolist())
    ds.VOILUTSequence = pydicom.Sequence([item])
    ds.WindowCenter, ds.WindowWidth = 10, 5  # the LUT takes precedence over the window
    np.testing.assert_array_equal(dicom.dicom_to_uint8(ds),
                                  np.round(lut[array] / 255.0 * 255).astype("uint8"))


def test_clahe_and_resize_equal_opencv(tmp_path, rng):
    array = (rng.random((64, 48)) * 200).astype("uint8")
    path = tmp_path / "c.dcm"
    dicom.write_dicom(path, array)
    base = dicom.dicom_to_uint8(path, windowing="minmax")
    expected = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(base)
    got = dicom.dicom_to_uint8(path, windowing="minmax", clahe=True, clahe_clip_limit=3.0,
                               clahe_tile_grid_size=(4, 4))
    np.testing.assert_array_equal(got, expected)
    resized = dicom.dicom_to_uint8(path, windowing="minmax", size=(32, 24))
    np.testing.assert_array_equal(resized, cv2.resize(base, (24, 32),
                                                      interpolation=cv2.INTER_AREA))


def test_bad_options_name_the_argument():
    with pytest.raises(ValueError, match=r"ConversionOptions: `windowing`.*'gamma'"):
        dicom.ConversionOptions(windowing="gamma")
    with pytest.raises(ValueError, match=r"`percentiles`"):
        dicom.ConversionOptions(percentiles=(90, 10))
    with pytest.raises(ValueError, match=r"`size`"):
        dicom.ConversionOptions(size=(0, 5))
    with pytest.raises(ValueError, match=r"`window width`"):
        dicom.ConversionOptions(window=(10, 0))


# ----------------------------------------------------------------------------- writing


def test_write_dicom_round_trip(tmp_path, rng):
    array = rng.integers(0, 65535, size=(20, 30)).astype("uint16")
    path = tmp_path / "w.dcm"
    uid = dicom.write_dicom(path, array, patient_id="P17", sex="M", age=38, view_position="AP",
                            sop_instance_uid="1.2.3.4.5")
    assert uid == "1.2.3.4.5"
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(ds.pixel_array, array)
    assert (ds.PatientID, ds.PatientSex, ds.PatientAge, ds.ViewPosition) == ("P17", "M", "038Y",
                                                                              "AP")
    assert ds.SOPInstanceUID == "1.2.3.4.5" == ds.file_meta.MediaStorageSOPInstanceUID
    assert (ds.Rows, ds.Columns, ds.PhotometricInterpretation) == (20, 30, "MONOCHROME2")

    rle = tmp_path / "rle.dcm"
    colour = rng.integers(0, 256, size=(10, 12, 3)).astype("uint8")
    uid = dicom.write_dicom(rle, colour, compression="rle")
    ds = pydicom.dcmread(rle)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    assert ds.SOPInstanceUID == uid
    np.testing.assert_array_equal(ds.pixel_array, colour)
    np.testing.assert_array_equal(dicom.dicom_to_uint8(rle), colour)


def test_write_dicom_errors(tmp_path):
    path = tmp_path / "bad.dcm"
    with pytest.raises(ValueError, match=r"write_dicom: `array`.*float32"):
        dicom.write_dicom(path, np.zeros((4, 4), "float32"))
    with pytest.raises(ValueError, match=r"write_dicom: `sex`.*'male'"):
        dicom.write_dicom(path, np.zeros((4, 4), "uint8"), sex="male")
    with pytest.raises(ValueError, match=r"write_dicom: `age`.*'38 years'"):
        dicom.write_dicom(path, np.zeros((4, 4), "uint8"), age="38 years")
    with pytest.raises(ValueError, match=r"write_dicom: `array`.*bits_stored=12"):
        dicom.write_dicom(path, np.full((4, 4), 5000, "uint16"), bits_stored=12)
    with pytest.raises(ValueError, match=r"write_dicom: `sop_instance_uid`"):
        dicom.write_dicom(path, np.zeros((4, 4), "uint8"), sop_instance_uid="abc")
    assert not path.exists()


# ----------------------------------------------------------------------------- folders


def _make_folder(root, rng):
    """Three good files (one in a subfolder), a non-DICOM file and a truncated DICOM."""
    good = {}
    for index, (name, sex, age, view) in enumerate([("a", "F", 30, "PA"), ("b", "M", 71, "AP"),
                                                    ("sub/c", "O", 5, "PA")]):
        array = rng.integers(0, 256, size=(20 + index, 16)).astype("uint8")
        path = root / f"{name}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        uid = dicom.write_dicom(path, array, patient_id=f"patient{index}", sex=sex, age=age,
                                view_position=view)
        good[str(path)] = (array, sex, f"{age:03d}Y", view, uid)
    (root / "corrupt.dcm").write_bytes(b"this is not a DICOM file at all" * 10)
    source = root / "a.dcm"
    data = source.read_bytes()
    (root / "truncated.dcm").write_bytes(data[: len(data) - 200])
    return good


def test_folder_conversion_reports_bad_files_converts_the_rest_and_resumes(tmp_path, rng):
    src, out = tmp_path / "dicoms", tmp_path / "png"
    src.mkdir()
    good = _make_folder(src, rng)
    summary = dicom.convert_dicom_folder(src, out, workers=2, progress=False,
                                         windowing="minmax")
    assert summary.converted == 3 and summary.skipped == 0
    failed = {os.path.basename(path): reason for path, reason in summary.failed}
    assert set(failed) == {"corrupt.dcm", "truncated.dcm"}
    assert "not a DICOM file" in failed["corrupt.dcm"]
    assert "corrupt.dcm" in str(summary) and "truncated.dcm" in str(summary)

    for path, (array, _, _, _, _) in good.items():
        png = out / (os.path.splitext(os.path.relpath(path, src))[0] + ".png")
        image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        values = array.astype("float64")
        expected = np.round((values - values.min()) / (values.max() - values.min()) * 255)
        np.testing.assert_array_equal(image, expected.astype("uint8"))
    assert not list(out.rglob("*.partial"))

    log = (out / "dicom_conversion.log").read_text()
    assert "corrupt.dcm" in log and "truncated.dcm" in log

    with open(out / "dicom_headers.csv", newline="") as handle:
        listed = list(csv.DictReader(handle))
    assert [r["dicom"] for r in listed] == sorted(str(p) for p in src.rglob("*.dcm"))
    rows = {os.path.basename(r["dicom"]): r for r in listed}
    assert len(rows) == 5
    for path, (array, sex, age, view, uid) in good.items():
        row = rows[os.path.basename(path)]
        assert row["status"] == "converted"
        assert (row["PatientSex"], row["PatientAge"], row["ViewPosition"]) == (sex, age, view)
        assert row["SOPInstanceUID"] == uid
        assert (int(row["Rows"]), int(row["Columns"])) == array.shape
        assert row["PhotometricInterpretation"] == "MONOCHROME2"
    assert rows["corrupt.dcm"]["status"] == "failed" and rows["corrupt.dcm"]["error"]

    # Resume: a PNG lost in an interrupted run is made again, the others are left alone.
    removed = out / "b.png"
    removed.unlink()
    (out / "b.png.partial").write_bytes(b"half a png")  # what a killed run may leave
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = dicom.convert_dicom_folder(src, out, workers=1, progress=False, windowing="minmax")
    assert (again.converted, again.skipped, len(again.failed)) == (1, 2, 2)
    assert removed.exists() and not (out / "b.png.partial").exists()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    with open(out / "dicom_headers.csv", newline="") as handle:
        statuses = {os.path.basename(r["dicom"]): r["status"] for r in csv.DictReader(handle)}
    assert statuses == {"a.dcm": "skipped", "b.dcm": "converted", "c.dcm": "skipped",
                        "corrupt.dcm": "failed", "truncated.dcm": "failed"}
    log_lines = (out / "dicom_conversion.log").read_text().splitlines()
    assert sum("corrupt.dcm" in line for line in log_lines) == 2  # appended, one per run


def test_command_line_tool(tmp_path, rng, capsys):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import dicom_to_png
    finally:
        sys.path.pop(0)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(_testdata("RG1_UNCR.dcm"), src / "chest.dcm")
    (src / "broken.dcm").write_bytes(b"\x00" * 300)
    status = dicom_to_png.main([str(src), str(out), "--size", "64", "--clahe", "--workers", "1",
                                "--no-progress"])
    assert status == 1
    printed = capsys.readouterr().out
    assert "1 converted" in printed and "broken.dcm" in printed
    assert cv2.imread(str(out / "chest.png"), cv2.IMREAD_UNCHANGED).shape == (64, 64)
    assert dicom_to_png.main([str(src), str(out), "--allow-failures", "--no-progress"]) == 0
    assert "1 skipped" in capsys.readouterr().out


def test_multi_valued_window_and_sigmoid_function(tmp_path, rng):
    array = rng.integers(0, 4096, size=(12, 10)).astype("uint16")
    path = tmp_path / "multi.dcm"
    dicom.write_dicom(path, array, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = [2000, 100], [3001, 50]  # two views: the first is used
    np.testing.assert_array_equal(dicom.dicom_to_uint8(ds),
                                  _reference_window_uint8(array, 2000, 3001, False))
    ds.VOILUTFunction = "SIGMOID"  # PS3.3 C.11.2.1.3.1
    expected = 1.0 / (1.0 + np.exp(-4.0 * (array.astype("float64") - 2000) / 3001))
    np.testing.assert_array_equal(dicom.dicom_to_uint8(ds),
                                  np.round(expected * 255).astype("uint8"))


def test_explicit_file_list_must_lie_under_the_input_folder(tmp_path):
    (tmp_path / "in").mkdir()
    outside = tmp_path / "elsewhere.dcm"
    dicom.write_dicom(outside, np.zeros((4, 4), "uint8"))
    with pytest.raises(ValueError, match=r"convert_dicom_folder: `files`.*elsewhere.dcm"):
        dicom.convert_dicom_folder(tmp_path / "in", tmp_path / "out", files=[outside],
                                   progress=False)
    with pytest.raises(ValueError, match=r"convert_dicom_folder: `input_dir`"):
        dicom.convert_dicom_folder(tmp_path / "missing", tmp_path / "out", progress=False)
