#!/usr/bin/python3
"""Re-pack views.bin with every entry deflated, as views_deflated.bin.

torch.save() writes every zip entry stored; a checkpoint re-packed by
another tool (here Python's zipfile with ZIP_DEFLATED) has compressed
entries, which weld inflates once, at open, into a temporary file. Run
from anywhere with Debian's python3 (no torch needed):
    /usr/bin/python3 tests/data/torch/make_deflated.py
The entries keep their order and names; timestamps are fixed so that the
output depends only on the input and zlib.
"""
import os
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    src = os.path.join(HERE, "views.bin")
    dst = os.path.join(HERE, "views_deflated.bin")
    with zipfile.ZipFile(src) as zin, \
            zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            out = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            out.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(out, zin.read(info))


if __name__ == "__main__":
    main()
