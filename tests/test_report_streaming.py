"""report.html's samples are packed one section at a time (SamplesPacker): the same bytes as
packing them all at once with the standard library, whatever the sizes of the sections."""

from __future__ import annotations

import base64
import gzip
import io
import json
import random

from proctor.report.sample_view import SamplesPacker, decode_samples, samples_block


def _one_shot(sections: list[dict]) -> str:
    raw = json.dumps({"sections": sections}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def test_streamed_samples_are_the_one_shot_bytes() -> None:
    rng = random.Random(7)
    for count in (0, 1, 2, 5, 40):
        sections = [
            {"model": "m", "dataset": f"d{i}",
             "rows": [[j, str(j), "问题 " * rng.randint(0, 400), "A", "A", "B", "wrong", "wrong", "", None]
                      for j in range(rng.randint(0, 30))]}
            for i in range(count)
        ]
        out = io.StringIO()
        packer = SamplesPacker(out)
        for section in sections:
            packer.add(section)
        packer.close()
        assert out.getvalue() == _one_shot(sections)
        assert decode_samples(samples_block(sections)) == {"sections": sections}
