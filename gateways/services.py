"""Desired state and its delivery to the fleet. Other apps call only what is in this module.

Seam (the contract other apps rely on):

- ``register_resource(resource_type, builder)``: an app declares how to build the full state of the world
  for one resource type and one group. ``builder(group: GatewayGroup) -> dict`` returns JSON-able data:

  * ``certificates``: ``{"certificates": [{"name", "domains": [...], "cert_pem", "chain_pem", "key_pem",
    "temporary": bool, "serial", "fingerprint", "not_after": unix seconds, "version_id": int}]}``
  * ``acme_challenges``: ``{"challenges": [{"domain", "token", "key_authorization"}]}``
  * ``waf_rules`` / ``config``: ``{"content": "<file text>", "name": "..."}`` (later issues)
  * ``emergency_rules``: ``{"rules": [...]}`` (later issues)

- ``publish_desired_state(resource_type, group=None, actor="automation") -> list[ResourceVersion]``: rebuild
  the state for one group (or every group), store a new ResourceVersion where the content changed (an
  unchanged state is a no-op: same checksum, no new version), and after the transaction commits send a notice
  on Redis pub/sub so every run_grpc replica pushes it. Returns the desired version per group.

- ``wait_for_acks(versions, timeout) -> AckWait``: block until every connected instance of each version's group
  has ACKed that version (or a newer one), or a NACK arrives, or the timeout passes.

Implemented by the push-plane work (issue 4).
