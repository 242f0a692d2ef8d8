"""A repository the writer wrote serves exactly the configs its specs render (artifact digests aside)."""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from search_build.repository.configs import model_config
from search_build.repository.writer import ARTIFACT_DIGEST_PARAMETER, folder_sha256, without_artifact_digest
from search_build.repository.spec import Ensemble


def test_written_repository_matches_spec(model_repository, pipelines):
    from search_build.repository.writer import served_model

    for pipeline in pipelines:
        for m in pipeline.models:
            text = (model_repository / m.name / "config.pbtxt").read_text()
            written = text_format.Parse(text, mc.ModelConfig())
            m = served_model(m, model_repository)  # the gate may have built it at its fallback precision
            assert without_artifact_digest(written) == model_config(m, "local")
            if not isinstance(m, Ensemble):  # the digest the writer adds is that of the files served
                assert written.parameters[ARTIFACT_DIGEST_PARAMETER].string_value == folder_sha256(
                    model_repository / m.name / "1"
                )
            assert (model_repository / m.name / "1").is_dir()
