"""Reading and writing images by reference string: the image stage's front door.

``read_image("oci-archive:x.tar", store)`` fetches an image into the store
(every blob digest-verified) and returns its :class:`Image`;
``write_image("docker-archive:out.tar:app:slim", image, store)`` writes one
whose blobs are in the store and returns the manifest digest written. The
transport is chosen by :func:`trimcage.image.reference.parse_reference`.
"""

from __future__ import annotations

from trimcage.image.interface import Image, ImageReference, StoreLike, TransportOptions
from trimcage.image.reference import get_transport, parse_reference


def _ref(ref: str | ImageReference) -> ImageReference:
    return ref if isinstance(ref, ImageReference) else parse_reference(ref)


def read_image(ref: str | ImageReference, store: StoreLike, opts: TransportOptions = TransportOptions()) -> Image:
    """Read the image named by ``ref`` into ``store`` and return it.

    Raise ``BadReferenceError`` for an unparsable reference and another
    ``ImageError`` subclass (one line, naming the file or blob) for anything
    wrong with the image itself.
    """
    r = _ref(ref)
    return get_transport(r.transport).read(r, store, opts)


def write_image(ref: str | ImageReference, image: Image, store: StoreLike,
                opts: TransportOptions = TransportOptions()) -> str:
    """Write ``image`` (all blobs in ``store``) to ``ref``; return the manifest digest written.

    File outputs appear atomically (temporary name + rename). A bare path is
    only accepted if it already is an image; name the transport for new files.
    """
    r = _ref(ref)
    return get_transport(r.transport).write(r, image, store, opts)
