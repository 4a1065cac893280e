"""Brute-force NMS with torchvision's semantics (XYXY boxes, IoU > threshold suppressed, stable
descending score order). Deliberately naive: it is the independent reference for engine.masks."""
import torch


def box_area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(a, b):
    lt = torch.max(a[:2], b[:2])
    rb = torch.min(a[2:], b[2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[0] * wh[1]
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


def nms(boxes, scores, iou_threshold):
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    boxes = boxes.double()
    keep = []
    suppressed = set()
    for i in order:
        if i in suppressed:
            continue
        keep.append(i)
        for j in order:
            if j not in suppressed and j != i and j not in keep and _iou(boxes[i], boxes[j]) > iou_threshold:
                suppressed.add(j)
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes, scores, idxs, iou_threshold):
    keep = []
    for cls in torch.unique(idxs).tolist():
        members = torch.where(idxs == cls)[0]
        kept = nms(boxes[members], scores[members], iou_threshold)
        keep.append(members[kept])
    if not keep:
        return torch.empty((0,), dtype=torch.int64)
    keep = torch.cat(keep)
    return keep[torch.argsort(scores[keep], descending=True, stable=True)]
