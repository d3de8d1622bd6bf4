import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(PKG_ROOT))
# The source tree's package, unless the tests run against an installed copy
# (tests/parts/python_pip.sh sets KVC_TEST_INSTALLED=1 after `pip install`).
if os.environ.get("KVC_TEST_INSTALLED") != "1":
    sys.path.insert(0, PKG_ROOT)
