#!/usr/bin/env python
"""Convert a folder of DICOM files to 8-bit PNGs with contrast correction, resumably.

    python tools/dicom_to_png.py dicom-images-train png-train --size 512 --clahe --workers 4

Existing PNGs are skipped, so rerunning after an interruption resumes. Failed files
(corrupt, unsupported transfer syntax, several frames) are listed at the end, appended to
the log and marked in the header CSV; the exit status is 1 when any file failed (0 with
``--allow-failures``). See docs/dicom.md.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir", help="folder searched recursively for DICOM files")
    parser.add_argument("output_dir", help="folder for the PNGs, the header CSV and the log")
    parser.add_argument("--pattern", default="*.dcm", help="glob of input files (default *.dcm)")
    parser.add_argument("--size", type=int, nargs="+", metavar="N",
                        help="output size: one number (square) or HEIGHT WIDTH")
    parser.add_argument("--windowing", default="auto",
                        choices=("auto", "header", "minmax", "percentile"),
                        help="VOI transform (default auto: header VOI LUT / window, else "
                             "--fallback)")
    parser.add_argument("--fallback", default="percentile", choices=("percentile", "minmax"))
    parser.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"),
                        help="explicit linear window in modality units")
    parser.add_argument("--percentiles", type=float, nargs=2, default=(0.5, 99.5),
                        metavar=("LOW", "HIGH"))
    parser.add_argument("--no-invert", action="store_true",
                        help="keep MONOCHROME1 images as stored (bright = low values)")
    parser.add_argument("--clahe", action="store_true", help="apply CLAHE (OpenCV)")
    parser.add_argument("--clahe-clip-limit", type=float, default=2.0)
    parser.add_argument("--clahe-tiles", type=int, nargs=2, default=(8, 8),
                        metavar=("ROWS", "COLS"))
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default: CPU count)")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing PNGs")
    parser.add_argument("--csv", default=None, help="header CSV (default OUTPUT/dicom_headers.csv)")
    parser.add_argument("--log", default=None,
                        help="failure log (default OUTPUT/dicom_conversion.log)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--allow-failures", action="store_true",
                        help="exit 0 even when some files failed")
    args = parser.parse_args(argv)
    if args.size is not None and len(args.size) not in (1, 2):
        parser.error("--size takes one number or HEIGHT WIDTH")
    return args


def main(argv=None):
    args = parse_args(argv)
    from keras_seg_extras.data import convert_dicom_folder

    size = None
    if args.size is not None:
        size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    summary = convert_dicom_folder(
        args.input_dir, args.output_dir, csv_path=args.csv, log_path=args.log,
        workers=args.workers, overwrite=args.overwrite, progress=not args.no_progress,
        pattern=args.pattern, windowing=args.windowing, fallback=args.fallback,
        window=tuple(args.window) if args.window else None,
        percentiles=tuple(args.percentiles), invert_monochrome1=not args.no_invert,
        clahe=args.clahe, clahe_clip_limit=args.clahe_clip_limit,
        clahe_tile_grid_size=tuple(args.clahe_tiles), size=size)
    print(summary)
    return 1 if summary.failed and not args.allow_failures else 0


if __name__ == "__main__":
    sys.exit(main())
