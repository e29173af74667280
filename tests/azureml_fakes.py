"""What the Azure ML target tests fake at the network call: the pollers `begin_*` return, and MLClient's
construction checked (real MLClient and entities; no call leaves the machine)."""

from __future__ import annotations

from azure.ai.ml import MLClient


class Poller:
    """What begin_* returns; result() waits on the service in azure-ai-ml."""

    def __init__(self, value=None) -> None:
        self.value = value

    def result(self, timeout=None):
        assert timeout == 3600
        return self.value


def check_ml_client(monkeypatch, state, subscription: str) -> None:
    """MLClient is made with DefaultAzureCredential for the config's workspace; each one lands in state.clients."""
    real_init = MLClient.__init__

    def ml_client_init(self, credential, subscription_id=None, resource_group_name=None, workspace_name=None, **kwargs):
        assert type(credential).__name__ == "DefaultAzureCredential"
        assert (subscription_id, resource_group_name, workspace_name) == (subscription, "sei-rg", "sei-ws")
        state.clients.append(self)
        real_init(self, credential, subscription_id, resource_group_name, workspace_name, **kwargs)  # makes no call

    monkeypatch.setattr(MLClient, "__init__", ml_client_init)
