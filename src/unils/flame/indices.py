"""Vertex index lists of the FLAME 2020 topology (5023 vertices) used by the UniLS metrics.

These are plain index lists, not FLAME model data. They are stored as the run-length text of the official
lists, in their original order: ``a-b`` is the inclusive ascending run ``a, a+1, ..., b``, and repeated
numbers are genuine duplicates of the original lists. Duplicates matter for mean-based numbers (FDD averages
over the 884 entries of [`UPPER_INDICES`][unils.flame.indices.UPPER_INDICES], duplicates included) and are
harmless for max-based ones (LVE).
"""

from __future__ import annotations

import numpy as np

__all__ = ["LIP_INDICES", "UPPER_INDICES", "UPPER_LIP_INDICES", "LOWER_LIP_INDICES", "parse_index_runs"]

_LIP_RUNS = """
1576-1583, 1590, 1590-1591, 1593, 1593, 1657-1658, 1661-1663, 1667-1670, 1686-1687, 1691, 1693-1697,
1700, 1702-1704, 1709-1723, 1728-1738, 1740, 1743, 1748-1751, 1758, 1763, 1765, 1770-1771, 1773-1782,
1787-1789, 1791-1796, 1801-1804, 1826-1827, 1836, 1846-1850, 1865-1866, 2712-2719, 2726, 2726-2727,
2729, 2729, 2774-2775, 2778-2780, 2784-2787, 2803-2804, 2808, 2810-2814, 2817, 2819-2821, 2826-2840,
2843-2853, 2855, 2858, 2863-2866, 2869, 2871, 2873, 2878-2892, 2894-2899, 2904-2907, 2928-2929,
2934-2939, 2948-2949, 3503-3504, 3506, 3509, 3511-3513, 3531, 3533, 3537, 3541, 3543, 3546-3547,
3790-3806, 3914-3928
"""

# Two blocks in the original: 751 entries ending at 3913, then 133 entries starting again at 16.
_UPPER_RUNS = """
16-18, 27, 335-338, 671-674, 697, 702-704, 713-715, 723, 807-809, 814-816, 821-829, 864-865, 877-885,
896-899, 902-909, 918-919, 922-924, 926-929, 939, 943-955, 958-972, 977-980, 985-986, 991-995, 999,
1012-1015, 1019-1023, 1033-1034, 1043-1044, 1059-1060, 1062, 1093, 1096, 1101, 1108, 1113-1114, 1135,
1144, 1146, 1151-1155, 1161-1164, 1168-1170, 1175-1176, 1181-1184, 1189-1190, 1193-1195, 1200-1202,
1216-1218, 1224-1226, 1243-1244, 1292-1294, 1329, 1331, 1336-1358, 1362-1378, 1383-1385, 1387-1391,
1396-1405, 1410-1422, 1425-1453, 1458-1469, 1474-1478, 1649, 2043-2046, 2103-2105, 2108-2114,
2118-2122, 2125-2127, 2134-2135, 2138-2140, 2176-2179, 2192-2195, 2202-2205, 2264-2278, 2287-2319,
2321-2360, 2370-2373, 2377-2385, 2388-2389, 2391, 2402-2407, 2418, 2421-2422, 2425-2456, 2465-2466,
2471-2473, 2485-2509, 2511-2530, 2532-2559, 2562-2590, 2595-2606, 2611-2615, 2766, 3078-3081,
3130-3132, 3135-3141, 3145-3154, 3157-3159, 3495, 3540, 3542, 3553, 3555, 3560, 3572, 3589, 3592, 3615,
3619-3620, 3631-3632, 3645, 3674-3675, 3682-3684, 3686-3690, 3692, 3694, 3696, 3699, 3704-3706, 3708,
3710-3712, 3721, 3729, 3731-3733, 3735, 3741, 3743-3744, 3747, 3749-3750, 3759, 3763-3764, 3766-3767,
3770, 3773-3777, 3779-3781, 3784, 3786-3789, 3809, 3812, 3823, 3827-3828, 3832-3833, 3840, 3847-3860,
3863-3868, 3872, 3874-3878, 3880-3882, 3884, 3886-3887, 3891-3893, 3895-3896, 3898-3903, 3905-3907,
3910-3913,
16-18, 27, 335-338, 573-574, 625-628, 667-674, 691-694, 705-708, 797, 1429-1430, 1441, 1471-1473, 1869,
1871, 2000-2001, 2024, 2030, 2034, 2088-2091, 2134-2141, 2160-2161, 2165-2168, 2176-2179, 2186-2189,
2196-2199, 2256, 2566-2567, 2578, 2608-2610, 2952-2953, 3064, 3068, 3070, 3153-3160, 3172-3173, 3495,
3505, 3520, 3524, 3540, 3550, 3705-3706, 3708, 3712, 3718, 3720-3721, 3729, 3732, 3735, 3748, 3763,
3773, 3782, 3786, 3789, 3863-3865, 3868-3869, 3871-3872, 3874, 3876, 3878, 3885, 3892, 3899, 3908, 3913
"""


def parse_index_runs(text: str) -> np.ndarray:
    """Expand run-length index text (``"3, 5-7, 5"`` -> ``[3, 5, 6, 7, 5]``), keeping order and duplicates.

    Args:
        text: comma-separated items, each ``n`` or an inclusive ascending run ``a-b``.

    Returns:
        int64 array of the indices in order.

    Raises:
        ValueError: an item is not a number or an ascending run.
    """
    out: list[int] = []
    for item in text.replace("\n", " ").split(","):
        item = item.strip()
        if not item:
            continue
        if "-" in item:
            a, b = (int(x) for x in item.split("-"))
            if b < a:
                raise ValueError(f"index run {item!r} is not ascending")
            out.extend(range(a, b + 1))
        else:
            out.append(int(item))
    return np.asarray(out, dtype=np.int64)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


#: Lip vertices (254 entries, 250 unique) used by LVE and the official lip loss.
LIP_INDICES: np.ndarray = _frozen(parse_index_runs(_LIP_RUNS))
#: Upper-face vertices (884 entries, 827 unique) used by FDD; duplicates are intentional.
UPPER_INDICES: np.ndarray = _frozen(parse_index_runs(_UPPER_RUNS))
#: Upper-lip landmark vertices (not used by any metric; kept for completeness).
UPPER_LIP_INDICES: np.ndarray = _frozen(np.array([2851, 2849, 2865, 2866, 3546, 1751, 1750, 1734, 1736]))
#: Lower-lip landmark vertices (not used by any metric; kept for completeness).
LOWER_LIP_INDICES: np.ndarray = _frozen(np.array([1775, 1794, 1803, 1850, 3506, 2939, 2906, 2897, 2882]))
