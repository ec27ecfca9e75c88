"""Address normalization shared by the library (marketplace.units)."""

from __future__ import annotations

import pytest
from eth_utils.address import to_checksum_address

from marketplace.errors import ConfigError
from marketplace.units import checksum_address, parse_address

ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.mark.parametrize("given", [ADDRESS, ADDRESS.lower(), "0x" + ADDRESS[2:].upper()])
def test_checksum_address_gives_the_eip55_form_of_any_case(given: str) -> None:
    assert checksum_address(given) == ADDRESS == to_checksum_address(given)


@pytest.mark.parametrize("junk", ["0x1234", "not an address", "0x" + "g" * 40])
def test_checksum_address_refuses_what_is_not_an_address_every_time(junk: str) -> None:
    for _ in range(2):  # a refusal is not remembered as an answer
        with pytest.raises(ValueError):
            checksum_address(junk)


def test_parse_address_refuses_a_wrong_mixed_case_checksum_and_accepts_lower_case() -> None:
    wrong = ADDRESS.replace("C", "c", 1)  # one letter's case flipped
    assert parse_address(ADDRESS.lower()) == ADDRESS
    with pytest.raises(ConfigError, match="checksum is wrong"):
        parse_address(wrong)
