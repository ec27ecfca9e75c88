// Hardhat 2, offline: the compiler is the npm solc-js package (never downloaded), and the
// settings are the ones py-solc-x uses (contracts/solc-settings.json), so both builds produce the
// same bytecode. `npx hardhat node` serves the second devnet (chain id 31337).
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = "0.8.28";
const SOLC_LONG_VERSION = "0.8.28+commit.7893614a";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) {
    throw new Error(`only solc ${SOLC_VERSION} is available offline (asked for ${args.solcVersion})`);
  }
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: SOLC_LONG_VERSION,
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: require("./contracts/solc-settings.json"),
  },
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: "cancun",
    },
  },
  paths: {
    sources: "./contracts",
    artifacts: "./artifacts-hardhat",
    cache: "./cache/hardhat",
  },
};
