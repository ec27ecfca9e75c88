"""``fedmarket deploy`` and ``fedmarket faucet``: contracts and devnet tokens."""

from __future__ import annotations

import click
from web3 import Web3

from marketplace.chain.deploy import deploy_marketplace, write_deployment
from marketplace.chain.tx import send_eth
from node.cli.context import CliContext, parse_amount
from node.cli.output import console, emit, json_option, kv_table, pass_ctx
from node.cli.params import ADDRESS


@click.command()
@click.option(
    "--token", help="Use this ERC-20 (e.g. a stablecoin) instead of deploying RewardToken."
)
@click.option("--unbonding-delay", type=int, default=7 * 24 * 3600, show_default=True,
              help="Seconds between unstake request and withdrawal.")  # fmt: skip
@click.option(
    "--arbiter", help="Dispute arbiter address (a multisig in production; default: deployer)."
)
@json_option
@pass_ctx
def deploy(
    c: CliContext, token: str | None, unbonding_delay: int, arbiter: str | None, as_json: bool
) -> None:
    """Deploy the marketplace contracts and write deployments/<chainId>.json.

    \b
    Example:
      fedmarket --dev-account 0 deploy
      cast call $(jq -r .contracts.TaskMarket.address deployments/31337.json) "taskCount()(uint256)"
    """
    signer = c.signer()
    dep = deploy_marketplace(
        c.w3, signer, token_address=token, unbonding_delay=unbonding_delay, arbiter=arbiter
    )
    path = write_deployment(dep, c.deployments_dir)
    out = {
        "chainId": dep.chain_id,
        "file": str(path),
        **{name: rec.address for name, rec in dep.contracts.items()},
    }
    emit(as_json, out, lambda: console.print(kv_table(f"Deployed on chain {dep.chain_id}", out)))


@click.command()
@click.argument("amount")
@click.option("--to", "to", type=ADDRESS, required=True, help="Recipient address.")
@click.option("--eth", default="1", show_default=True,
              help="Also send this much ETH for gas when the recipient holds less.")  # fmt: skip
@json_option
@pass_ctx
def faucet(c: CliContext, amount: str, to: str, eth: str, as_json: bool) -> None:
    """Devnet only: mint AMOUNT reward tokens to an address, and some ETH for gas.

    The signer must own the RewardToken (the deployer: `--dev-account 0` after
    `fedmarket --dev-account 0 deploy`).

    \b
    Example:
      fedmarket --dev-account 0 faucet 1000 --to 0x70997970C51812dc3A010C7d01b50e0d17dc79C8
    """
    value = parse_amount(amount)
    eth_wei = parse_amount(eth)
    signer = c.signer()
    receipt = c.market.mint(signer, to, value)
    sent_eth = 0
    if eth_wei and c.w3.eth.get_balance(Web3.to_checksum_address(to)) < eth_wei:
        send_eth(c.w3, signer, to, eth_wei)
        sent_eth = eth_wei
    out = {"to": to, "amount": str(value), "eth": str(sent_eth),
           "tx": receipt["transactionHash"].hex()}  # fmt: skip
    emit(as_json, out, lambda: console.print(
        f"minted {amount} to {to}" + (f" and sent {eth} ETH" if sent_eth else "")
    ))  # fmt: skip
