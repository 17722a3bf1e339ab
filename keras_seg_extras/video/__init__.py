"""keras_seg_extras.video: video-instance and clip-level tools (NumPy; OpenCV to read video).

- clip ranking from a frame classifier (``clips.py``): read frames, max-over-frames clip
  scores, top-k clips, weighted score fusion, average precision at k;
- tracking (``tracking.py``): online association, bidirectional tracking, label voting;
- boxes (``boxes.py``): box IoU, max-score box fusion, mask IoU and mask-scored scores;
- frame redundancy (``redundancy.py``): per-object mean IoU of consecutive frames, its
  histogram, uniform frame subsampling.

Moved here from ``keras_seg_extras.inference`` (which now holds segmentation inference only).
"""

from keras_seg_extras.video.boxes import box_iou, fuse_boxes, mask_iou, mask_scored_scores
from keras_seg_extras.video.clips import (average_precision_at_k, clip_score, clip_scores,
                                          mean_average_precision_at_k, predict_frames,
                                          read_frames, top_k_clips, weighted_score_ensemble)
from keras_seg_extras.video.redundancy import (keep_uniform_frames, object_mean_ious,
                                               redundancy_histogram, uniform_frame_indices)
from keras_seg_extras.video.tracking import (associate, bidirectional_tracks, merge_tracklets,
                                             vote_label)

__all__ = [
    "associate", "average_precision_at_k", "bidirectional_tracks", "box_iou", "clip_score",
    "clip_scores", "fuse_boxes", "keep_uniform_frames", "mask_iou", "mask_scored_scores",
    "mean_average_precision_at_k", "merge_tracklets", "object_mean_ious", "predict_frames",
    "read_frames", "redundancy_histogram", "top_k_clips", "uniform_frame_indices",
    "vote_label", "weighted_score_ensemble",
]
