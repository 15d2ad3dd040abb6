"""A held-out traffic family, written by an author who never read the detector.

Used ONLY to score the detector (bench/detect_holdout.py), never to tune it:
its value is that its ideas of shops, shoppers, bots, attacks and failures are
not the ones the detector (or the training families) were written from.
Start reading at :func:`holdout_shop` in ``_shop.py``; a second family,
written late (:func:`headless_shop` in ``_headless.py``: a headless
storefront's API origin, no asset lines, pages asked by its renderer), is
held out in the same way.
"""

from shieldwall.detect.holdout._headless import headless_shop
from shieldwall.detect.holdout._shop import HoldoutLog, holdout_shop

__all__ = ["HoldoutLog", "headless_shop", "holdout_shop"]
