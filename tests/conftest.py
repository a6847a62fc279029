import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("VITRUST_HYPOTHESIS", "default"))

VECTORS = Path(__file__).parent / "vectors" / "vd_v1.json"


@pytest.fixture(scope="session")
def vectors():
    return json.loads(VECTORS.read_text())
