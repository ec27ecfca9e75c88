"""The task protocol shared by every role: the task document on IPFS, a peer's session with a
task (publishing and fetching encrypted updates and models, recomputing global models), the
requester's task creation, and the finalized report trainers claim from."""
