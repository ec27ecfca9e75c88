"""A view that reverts on the in-process EVM (the demo's zero-setup chain) raises the same decoded
``TransactionRevertedError`` as on a node: eth-tester's own ``TransactionFailed`` must not escape
(the demo's oracles stopped on one when `ModelVersions.taskState` of an unregistered task
reverted)."""

from __future__ import annotations

import pytest

from marketplace.chain.backend import in_process_chain
from marketplace.chain.clients import Marketplace
from marketplace.chain.deploy import deploy_marketplace, deploy_model_versions
from marketplace.chain.versions_client import VersionsClient
from marketplace.errors import TransactionRevertedError
from marketplace.protocol.identity import Identity

pytestmark = pytest.mark.unit


def test_a_reverting_view_on_the_in_process_evm_is_a_decoded_revert() -> None:
    # Prepare: the marketplace and ModelVersions on a fresh in-process EVM
    deployer = Identity.dev(0)
    w3 = in_process_chain(fund=(deployer.address,))
    deployment = deploy_marketplace(w3, deployer.eth, unbonding_delay=3600)
    deployment = deploy_model_versions(w3, deployer.eth, deployment)
    versions = VersionsClient(Marketplace(w3, deployment))
    # Execute: the state of a task never registered for retention
    with pytest.raises(TransactionRevertedError) as caught:
        versions.state(7)
    # Assert: the custom error, by name, as a node would report it
    assert caught.value.error_name == "ModelVersionsUnknownTask"
