"""Generates the invoice; its number is the step's output."""
import json
import sys

order = json.load(sys.stdin)
print(json.dumps({"output": {"invoice": f"INV-{order['order_id']}"}}))
