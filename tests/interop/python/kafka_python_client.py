"""Drives kafka-python (from PyPI) against ktb for the interop tests.

Usage: kafka_python_client.py BOOTSTRAP MECHANISM USER PASSWORD ACTION [tokenauth]
With "tokenauth", the SCRAM client-first message carries the KIP-48 extension
`tokenauth=true`, as Java clients send it for token logins (kafka-python cannot on its own).
ACTION is one of:
  metadata  log in, print the cluster as JSON
  users     log in, add user "py-user" (SCRAM-SHA-256) and print describe_user_scram_credentials()
Prints one JSON object on stdout; a failed login prints {"error": <class>, "message": <text>}.
"""
import json
import sys

from kafka.admin import KafkaAdminClient
from kafka.admin._users import UserScramCredentialUpsertion


def send_tokenauth_extension():
    """Registers a SCRAM mechanism whose client-first-bare ends in `,tokenauth=true`.

    The extension is part of client-first-bare, so it enters the AuthMessage both sides sign.
    The registry is process-wide; this script is its own process.
    """
    from kafka.net import sasl
    from kafka.net.sasl.scram import SaslMechanismScram, ScramClient

    class TokenScramClient(ScramClient):
        def first_message(self):
            bare = b"n=" + self.user + b",r=" + self.nonce + b",tokenauth=true"
            self.auth_message += bare
            return b"n,," + bare

    class TokenScram(SaslMechanismScram):
        def __init__(self, **config):
            super().__init__(**config)
            self._scram_client = TokenScramClient(
                config["sasl_plain_username"], config["sasl_plain_password"], config["sasl_mechanism"]
            )

    for name in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        sasl.register_sasl_mechanism(name, TokenScram, overwrite=True)


def main():
    bootstrap, mechanism, user, password, action = sys.argv[1:6]
    if sys.argv[6:7] == ["tokenauth"]:
        send_tokenauth_extension()
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=mechanism,
            sasl_plain_username=user,
            sasl_plain_password=password,
            bootstrap_timeout_ms=4000,
            request_timeout_ms=5000,
        )
    except Exception as e:  # a failed login surfaces as a bootstrap timeout
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return
    try:
        if action == "metadata":
            cluster = admin.describe_cluster()
            brokers = [{"node_id": b["broker_id"], "host": b["host"], "port": b["port"]} for b in cluster["brokers"]]
            print(json.dumps({
                "cluster_id": cluster["cluster_id"],
                "controller_id": cluster["controller_id"],
                "brokers": brokers,
                "authorized_operations": sorted(cluster.get("authorized_operations") or []),
            }))
        elif action == "users":
            altered = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion("py-user", "SCRAM-SHA-256", "py-password", iterations=8192)]
            )
            described = admin.describe_user_scram_credentials()
            users = {
                name: sorted([int(i["mechanism"]), i["iterations"]] for i in info["credential_infos"])
                for name, info in described.items()
            }
            print(json.dumps({"altered": {k: v for k, v in altered.items()}, "users": users}))
        else:
            raise SystemExit(f"unknown action {action}")
    finally:
        admin.close()


if __name__ == "__main__":
    main()
