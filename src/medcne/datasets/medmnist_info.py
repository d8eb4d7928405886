"""Facts about the MedMNIST v2/v3 2D datasets: class names (from MedMNIST's INFO)."""

from __future__ import annotations

import re

CLASS_NAMES: dict[str, list[str]] = {
    "pathmnist": [
        "adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
        "normal colon mucosa", "cancer-associated stroma", "colorectal adenocarcinoma epithelium",
    ],
    "dermamnist": [
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
        "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
        "vascular lesions",
    ],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast",
        "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    ],
    "tissuemnist": [
        "Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
        "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
        "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb",
    ],
    "organamnist": [
        "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
        "liver", "lung-left", "lung-right", "pancreas", "spleen",
    ],
}
CLASS_NAMES["organcmnist"] = CLASS_NAMES["organamnist"]
CLASS_NAMES["organsmnist"] = CLASS_NAMES["organamnist"]


def flag_of(filename: str) -> str | None:
    """'bloodmnist_64.npz' -> 'bloodmnist'; None when not a MedMNIST name."""
    match = re.match(r"([a-z]+mnist)", filename.lower())
    return match.group(1) if match else None


def class_names_for(filename: str, n_classes: int | None) -> list[str] | None:
    """MedMNIST class names for a file name when they match the labels found."""
    names = CLASS_NAMES.get(flag_of(filename) or "")
    if names is None or n_classes is None or n_classes > len(names):
        return None
    return list(names)
