"""Property tests share the hypothesis profiles registered in tests/conftest.py."""

import importlib.util
import os

_path = os.path.join(os.path.dirname(__file__), "..", "tests", "conftest.py")
_spec = importlib.util.spec_from_file_location("atlas_tests_conftest", _path)
_shared = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)  # registers the profiles and loads HYPOTHESIS_PROFILE

store_path = _shared.store_path
