#!/usr/bin/env python3
"""Git clean filter of model_repository/*/config.pbtxt (.gitattributes): the build's digest becomes the placeholder.

The committed configs are the specs' text (``searchbar demo --specs-only``), whose ``artifact_sha256`` parameter
holds 64 zeros (search_build.repository.writer.UNBUILT_DIGEST); a build writes the same text with the SHA-256 of
the files it wrote, which differs per machine and package versions. Through this filter git compares built configs
with that digest read as the placeholder, so a build leaves ``git status`` clean unless a spec changed (same length:
git compares the contents of files whose size did not change). scripts/setup.sh registers it:
``git config filter.artifact-digest.clean "python3 scripts/normalise_artifact_digest.py"``.
Standard library only: git runs it from the work tree's top level, with any python3.
"""

import re
import sys

UNBUILT_DIGEST = "0" * 64
# How google.protobuf.text_format prints the writer's map entry (search_build.repository.writer).
DIGEST_ENTRY = re.compile(r'(parameters \{\n  key: "artifact_sha256"\n  value \{\n    string_value: ")[0-9a-f]{64}(")')


def normalise(text: str) -> str:
    return DIGEST_ENTRY.sub(rf"\g<1>{UNBUILT_DIGEST}\g<2>", text)


if __name__ == "__main__":
    sys.stdout.write(normalise(sys.stdin.read()))
