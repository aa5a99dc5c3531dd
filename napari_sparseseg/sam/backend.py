"""One small interface over every SAM-like model: encode a 2D slice once, decode many prompts.

``SamBackend.encode(slice2d) -> Embedding`` and ``SamBackend.decode(embedding, boxes/points/mask) ->
(logits at slice resolution, quality scores)``.  The two concrete models differ only in their input
size and pixel normalisation:

* LiteMedSAM (TinyViT encoder, 256 x 256 input, images scaled to [0, 1]) -- the bundled default;
* segment-anything ViT-B/L/H (1024 x 1024 input, ImageNet mean/std on 0..255) -- also MedSAM ViT-B.

Both resize the longest side to the input size and pad bottom/right (as SAM and MedSAM were trained),
so prompt coordinates scale by one factor and masks are cropped before resizing back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Embedding:
    """Image embedding of one slice plus the geometry needed to map prompts and masks.

    ``features`` is ``(C, h, w)`` float32 (LiteMedSAM and SAM: 256 x 64 x 64).
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return int(self.features.nbytes)


def resized_shape(h: int, w: int, target: int) -> tuple[int, int]:
    """Longest side -> ``target`` keeping the aspect ratio (SAM's ResizeLongestSide)."""
    scale = target / max(h, w)
    return int(round(h * scale)), int(round(w * scale))


class SamBackend:
    """A SAM-like model split into encoder and prompt decoder.

    Args:
        image_encoder, prompt_encoder, mask_decoder: the three torch modules.
        image_size: square encoder input side (256 LiteMedSAM, 1024 SAM).
        pixel_mean, pixel_std: per-channel normalisation applied to the 0..``value_range`` image.
        value_range: the slice (already scaled to [0, 1]) is multiplied by this before normalising.
        name: cache key and display name, e.g. ``"litemedsam"`` or ``"sam-vit_b"``.
    """

    def __init__(self, image_encoder: torch.nn.Module, prompt_encoder: torch.nn.Module,
                 mask_decoder: torch.nn.Module, *, image_size: int, name: str,
                 pixel_mean: Sequence[float] = (0.0, 0.0, 0.0), pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
                 value_range: float = 1.0, device: str | torch.device = "cpu", fingerprint: str = "") -> None:
        self.image_encoder = image_encoder.eval()
        self.prompt_encoder = prompt_encoder.eval()
        self.mask_decoder = mask_decoder.eval()
        self.image_size = int(image_size)
        self.name = name
        self.fingerprint = fingerprint or name
        self.device = torch.device(device)
        self.pixel_mean = torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1)
        self.pixel_std = torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1)
        self.value_range = float(value_range)
        for m in (self.image_encoder, self.prompt_encoder, self.mask_decoder):
            m.to(self.device)
        self._dense_pe = None
        #: optional replacement for the eager encoder (e.g. a quantised copy), same call signature
        self.fast_encoder: torch.nn.Module | None = None
        #: optional replacement for ``mask_decoder.predict_masks`` (see ``sam.fast``)
        self.fast_decoder = None

    # ------------------------------------------------------------------ encode
    def preprocess(self, slice2d: np.ndarray) -> torch.Tensor:
        """A [0, 1] 2D slice -> normalised, resized, padded ``(1, 3, S, S)`` tensor."""
        arr = np.asarray(slice2d, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"encode() takes a 2D slice, got shape {arr.shape}")
        h, w = arr.shape
        nh, nw = resized_shape(h, w, self.image_size)
        x = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        x = x.expand(1, 3, nh, nw) * self.value_range
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, self.image_size - nw, 0, self.image_size - nh))

    @torch.inference_mode()
    def encode(self, slice2d: np.ndarray, *, use_fast: bool = True) -> Embedding:
        """Embed one 2D slice (values expected in [0, 1], see ``pseudo.normalize``)."""
        x = self.preprocess(slice2d).to(self.device)
        enc = self.fast_encoder if (use_fast and self.fast_encoder is not None) else self.image_encoder
        feats = enc(x)[0].float().cpu().numpy()
        h, w = np.asarray(slice2d).shape
        return Embedding(feats, (int(h), int(w)), resized_shape(h, w, self.image_size))

    # ------------------------------------------------------------------ decode
    def _scale_coords(self, coords: np.ndarray, emb: Embedding) -> np.ndarray:
        """(x, y) in slice pixels -> (x, y) in encoder-input pixels."""
        sy = emb.input_size[0] / emb.original_size[0]
        sx = emb.input_size[1] / emb.original_size[1]
        c = np.asarray(coords, dtype=np.float32).copy()
        c[..., 0::2] *= sx
        c[..., 1::2] *= sy
        return c

    @torch.inference_mode()
    def decode(
        self,
        emb: Embedding,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
        *,
        multimask: bool = False,
        low_res: bool = False,
        use_fast: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode prompts on a cached embedding.

        Args:
            boxes: ``(N, 4)`` x0, y0, x1, y1 in slice pixels (one mask per box).
            points: ``(N, P, 2)`` or ``(P, 2)`` x, y in slice pixels; ``point_labels`` 1 = positive, 0 = negative.
            mask_logits: ``(N, 256, 256)`` or ``(256, 256)`` low-res logits from an earlier decode
                (``low_res=True``) used as a dense prompt, e.g. from the neighbouring slice.
            multimask: return the decoder's 3 candidate masks instead of 1.
            low_res: return the decoder's 256 x 256 logits instead of slice-resolution logits.
            use_fast: use the ONNX decoder when one is attached (``sam.fast``).

        Returns:
            ``(logits, scores)``: logits ``(N, K, H, W)`` float32 (K = 1 or 3), scores ``(N, K)``.
        """
        n = None
        box_t = pts = None
        if boxes is not None:
            b = self._scale_coords(np.asarray(boxes, dtype=np.float32).reshape(-1, 4), emb)
            box_t = torch.from_numpy(b).to(self.device)
            n = b.shape[0]
        if points is not None:
            p = np.asarray(points, dtype=np.float32)
            lab = np.asarray(point_labels, dtype=np.int64)
            if p.ndim == 2:
                p, lab = p[None], lab[None]
            p = self._scale_coords(p, emb) + 0.5  # SAM samples pixel centres
            if box_t is None:
                # SAM's convention: without a box, pad each point set with a "not a point" (-1) entry
                p = np.concatenate([p, np.zeros((p.shape[0], 1, 2), np.float32)], axis=1)
                lab = np.concatenate([lab, -np.ones((lab.shape[0], 1), np.int64)], axis=1)
            pts = (torch.from_numpy(p).to(self.device), torch.from_numpy(lab).to(self.device))
            n = p.shape[0] if n is None else n
            if p.shape[0] != n:
                raise ValueError("boxes and point sets must come in equal numbers")
        mask_t = None
        if mask_logits is not None:
            m = np.asarray(mask_logits, dtype=np.float32)
            m = m.reshape((-1, 1) + m.shape[-2:])
            mask_t = torch.from_numpy(m).to(self.device)
            n = m.shape[0] if n is None else n
        if n is None:
            raise ValueError("decode() needs at least one prompt (box, points or mask)")
        sparse, dense = self.prompt_encoder(points=pts, boxes=box_t, masks=mask_t)
        if sparse.shape[0] != n:
            sparse = sparse.expand(n, -1, -1)
        if dense.shape[0] != n:
            dense = dense.expand(n, -1, -1, -1)
        if self._dense_pe is None:
            self._dense_pe = self.prompt_encoder.get_dense_pe()
        feats = torch.from_numpy(emb.features).to(self.device)[None]
        if self.fast_decoder is not None and use_fast:
            logits, scores = self.fast_decoder(feats, self._dense_pe, sparse, dense)
            sel = slice(1, None) if multimask else slice(0, 1)
            logits, scores = logits[:, sel], scores[:, sel]
        else:
            logits, scores = self.mask_decoder(
                image_embeddings=feats, image_pe=self._dense_pe, sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=multimask,
            )
        if low_res:
            return logits.float().cpu().numpy(), scores.float().cpu().numpy()
        return self.postprocess(logits, emb).cpu().numpy(), scores.float().cpu().numpy()

    def postprocess(self, low_res_logits: torch.Tensor, emb: Embedding) -> torch.Tensor:
        """Decoder logits -> encoder-input size -> crop the padding -> slice resolution."""
        x = F.interpolate(low_res_logits.float(), size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False)
        x = x[..., : emb.input_size[0], : emb.input_size[1]]
        return F.interpolate(x, size=emb.original_size, mode="bilinear", align_corners=False)

    def to_low_res(self, mask: np.ndarray, emb: Embedding, scale: float = 8.0) -> np.ndarray:
        """A binary slice-resolution mask -> low-res pseudo-logits (256 x 256 for real models) for ``mask_logits``."""
        m = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
        m = F.interpolate(m, size=emb.input_size, mode="bilinear", align_corners=False)
        m = F.pad(m, (0, self.image_size - emb.input_size[1], 0, self.image_size - emb.input_size[0]))
        m = F.interpolate(m, size=tuple(self.prompt_encoder.mask_input_size), mode="bilinear", align_corners=False)
        return ((m[0, 0] - 0.5) * 2 * scale).numpy()
