"""Notice Python-backend stub processes that died and reload their models.

Triton 2.51's Python backend does not restart a stub that was killed (OOM killer, kill -9, a crash in
native code): every request to that model instance fails after ~1 s with ``Stub process '<instance>'
is not healthy`` while the server and the model keep reporting *ready*. Unloading and loading the model
again (explicit model control) starts a fresh stub; a plain ``load_model`` of an unchanged model keeps
its instances, dead stub included. This watchdog compares the stubs a server had when it was last
healthy with the ones alive now, and reloads the models that lost one.
"""

from __future__ import annotations

import re

from .soak import server_processes

_INSTANCE_SUFFIX = re.compile(r"_\d+_\d+$")  # <model>_<group index>_<instance index>


def model_of_instance(instance: str) -> str:
    return _INSTANCE_SUFFIX.sub("", instance)


class StubWatchdog:
    def __init__(self, server_pid: int, grpc_url: str, headers: dict[str, str] | None = None):
        self.server_pid = server_pid
        self.grpc_url = grpc_url
        self.headers = headers or {}  # the server's admin key header (search_tools.server.ADMIN_HEADER)
        self.expected = self._alive()

    def _alive(self) -> dict[str, int]:
        return {label: p.pid for label, p in server_processes(self.server_pid).items() if label != "tritonserver"}

    def dead_instances(self) -> list[str]:
        alive = self._alive()
        return sorted(label for label, pid in self.expected.items() if alive.get(label) != pid)

    def heal(self) -> list[str]:
        """Reload every model that lost a stub (needs --model-control-mode=explicit); returns the models reloaded."""
        import tritonclient.grpc as grpcclient

        models = sorted({model_of_instance(i) for i in self.dead_instances()})
        if models:
            client = grpcclient.InferenceServerClient(self.grpc_url)
            try:
                for model in models:
                    # load_model alone keeps the (dead) instances when nothing changed: unload first.
                    client.unload_model(model, headers=self.headers)
                    client.load_model(model, headers=self.headers)
            finally:
                client.close()
        self.expected = self._alive()
        return models
