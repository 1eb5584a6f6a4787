"""The flask sample: a tiny JSON service with a computed value and a health route."""

import hashlib
import os

from flask import Flask, jsonify

app = Flask(__name__)


def fib(n: int) -> int:
    """The n-th Fibonacci number (fib(0) == 0)."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


@app.route("/")
def index():
    value = fib(90)
    return jsonify(service="flask-sample", fib90=value,
                   sha256=hashlib.sha256(str(value).encode()).hexdigest(), pid=os.getpid())


@app.route("/health")
def health():
    return jsonify(status="ok")


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "8000")))
