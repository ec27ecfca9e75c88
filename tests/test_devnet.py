"""The devnet layer against real Anvil: start, fund, revert decoding, clean stop."""

from __future__ import annotations

import pytest
from eth_account import Account

from marketplace.chain.backend import connect
from marketplace.chain.devnet import DEV_PRIVATE_KEYS, start_devnet
from marketplace.chain.tx import RevertDecoder
from marketplace.errors import RpcUnreachableError


def test_dev_keys_are_the_well_known_funded_accounts(w3):
    first = Account.from_key(DEV_PRIVATE_KEYS[0]).address
    assert first == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert len(set(DEV_PRIVATE_KEYS)) == 20
    assert w3.eth.get_balance(first) > 10**21


@pytest.mark.anvil
def test_the_devnet_binds_loopback_and_stops(chain_kind):
    node = start_devnet(chain_kind)
    assert node.rpc_url.startswith("http://127.0.0.1:")
    assert connect(node.rpc_url).eth.chain_id == 31337
    node.stop()
    with pytest.raises(RpcUnreachableError, match="fedmarket devnet up"):
        connect(node.rpc_url, timeout=2)


def test_unreachable_rpc_is_one_line_with_the_fix():
    with pytest.raises(RpcUnreachableError) as err:
        connect("http://127.0.0.1:1", timeout=2)
    assert "\n" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


def test_revert_decoder_names_custom_errors_and_reasons():
    abi = [{"type": "error", "name": "Boom", "inputs": [{"name": "x", "type": "uint256"}]}]
    decoder = RevertDecoder([abi])
    data = "0x" + "e3b3bc2b"  # not Boom's selector: unknown
    assert decoder.decode(data) is None
    from eth_abi import encode
    from eth_utils import function_abi_to_4byte_selector

    boom = function_abi_to_4byte_selector(abi[0]) + encode(["uint256"], [7])
    assert str(decoder.decode(boom)) == "Boom(x=7)"
    reason = bytes.fromhex("08c379a0") + encode(["string"], ["nope"])
    assert str(decoder.decode(reason)) == 'reverted with reason "nope"'
    assert decoder.decode(b"\x01\x02") is None
