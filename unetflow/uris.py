"""Checks for storage URLs given in configs and on the command line.

Only two kinds of location are supported by this install: a local folder and an S3(-compatible)
bucket, `s3://bucket[/prefix]` (the endpoint comes from the environment, see `storage.py`).
A typo such as `s3://` or `s3:/bucket` is refused here rather than by Ray or DVC later.
"""

from __future__ import annotations

import re

# S3 bucket naming rules: 3-63 characters, lower-case letters, digits, dots and hyphens,
# starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
SUPPORTED = "a local folder or s3://bucket/prefix"


def check_location(url: str) -> str:
    """Return `url` when it is a local path or a well-formed `s3://bucket[/prefix]`.

    Raises:
        ValueError: a message naming the bad part and the accepted forms.
    """
    if not url.strip():
        raise ValueError(f"is empty; use {SUPPORTED}")
    scheme, sep, rest = url.partition("://")
    if not sep:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", url) and not re.match(r"^[A-Za-z]:[\\/]", url):
            raise ValueError(f"{url!r} looks like a URL with a missing slash; use {SUPPORTED}")
        return url  # a local folder
    if scheme != "s3":
        raise ValueError(f"unsupported scheme {scheme + '://'!r} in {url!r}; use {SUPPORTED}")
    bucket = rest.split("/", 1)[0]
    if not bucket:
        raise ValueError(f"{url!r} names no bucket; use s3://bucket/prefix")
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"{bucket!r} in {url!r} is not a valid S3 bucket name "
            "(3-63 lower-case letters, digits, dots or hyphens)"
        )
    return url
