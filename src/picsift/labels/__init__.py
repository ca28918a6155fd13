"""Labelled data: tags, objects, labelling status and issues per image, and the importers/exporters of
labelled project formats (Supervisely, COCO, YOLO, Pascal VOC, CVAT, Label Studio, Hugging Face datasets)."""
