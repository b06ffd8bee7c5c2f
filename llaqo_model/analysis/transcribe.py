"""Piano transcription with the pretrained Transkun model shipped inside the `transkun` package."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

import moduleconf
import numpy as np
import torch
import torch.nn.functional as F
from transkun.CRF import NeuralSemiCRFInterval
from transkun.LayersTransformer import BasicBlock, MultiHeadAttentionKernel, ScaledInnerProductIntervalScorer
from transkun.Util import MelSpectrum

from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_model.io import pick_device

SUSTAIN_PEDAL = -64
LOWEST_KEY = 21  # A0: column 0 of `OnsetEvidence.scores`
KEYS = 88
PEDAL_SYMBOLS = 2  # Transkun's first two output symbols are the sustain and soft pedals
EVIDENCE_BLOCK = 64  # start frames per block in `device_onset_scores` (bounds the masked copy it makes)
HOP_STEP_S = 0.25  # the grid on which `Transcriber.hop_for` tries longer hops


@dataclass
class TranscriberConfig:
    """Segmenting and device settings; the defaults trade no accuracy for less overlap than Transkun's 16/8 s."""

    segment_s: float = 16.0
    hop_s: float = 12.0
    # A take whose last segment would start in Transkun's end padding (about a third of all lengths; a
    # 17 s take decodes 3 segments, the last all silence) is cut with a hop up to this long instead, when
    # that saves a segment: segments still overlap by 3 s, and each frame's evidence comes from the
    # segment where it lies nearest the middle.
    max_hop_s: float = 13.0
    device: str = "cpu"
    threads: int | None = None
    precision: str = "auto"  # "fp32", "bf16", or "auto": bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32


def resolve_precision(precision: str, device: str) -> str:
    """'auto' → 'bf16' on a CPU that computes bf16 natively (half the time, same notes), else 'fp32'."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


class FlatAttention(MultiHeadAttentionKernel):
    """Transkun's attention with the pitch and time axes folded into the batch before the attention
    product: PyTorch's fused CPU attention kernel takes 4-d inputs only, and Transkun's 5-d ones fall
    back to the unfused path (a quarter slower). Same weights, same arithmetic."""

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None):
        key = query if key is None else key
        value = key if value is None else value

        def heads(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            x = (x @ weight).unflatten(-1, (self.num_heads, self.head_dim)).transpose(-2, -3)
            return x.reshape(-1, *x.shape[-3:])

        q, k, v = heads(query, self.q_proj_weight), heads(key, self.k_proj_weight), heads(value, self.v_proj_weight)
        fetched = F.scaled_dot_product_attention(q, k, v)
        fetched = fetched.reshape(*query.shape[:-2], *fetched.shape[-3:])
        return self.out_proj(fetched.transpose(-2, -3).flatten(-2, -1))


class ContiguousMel(MelSpectrum):
    """Transkun's mel front end with the spectrogram made contiguous before the filterbank product,
    which is then one matrix product instead of the filterbank copied for every frame. Same output."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        power = self.spectrogramExtractor(frames).abs().pow(2)
        if self.toMono and power.dim() >= 4:
            power = power.mean(dim=-4, keepdim=True)
        mel = (power.transpose(-1, -2).contiguous() @ self.freq2mels).transpose(-1, -2)
        if self.log:
            mel = ((mel + self.eps).log() - math.log(self.eps)) / (-math.log(self.eps))
        return mel


class ContiguousBlock(BasicBlock):
    """Transkun's encoder layer (attention across pitch, then across time) with each swap of the time and
    pitch axes copied once into contiguous memory: Transkun only transposes the view, so the layers of
    the time half each copied their input again (the profiler's copy time fell by a quarter). Same
    arithmetic."""

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None = None, crossAttn: bool = False) -> torch.Tensor:
        mem = x if mem is None else mem  # keys and values: the layer's input, as in Transkun
        h = self.fnnBlockF(self.mhaBlockF(x, mem))
        h, mem = h.transpose(-3, -2).contiguous(), mem.transpose(-3, -2).contiguous()
        h = self.fnnBlockT(self.mhaBlockT(h, mem))
        return h.transpose(-3, -2).contiguous()


class InPlaceIntervalScorer(ScaledInnerProductIntervalScorer):
    """Transkun's interval scorer with the length scaling and the diagonal applied in place: the
    [pitch, end, start] score matrix (~170 MB a segment) is written once instead of four times
    (a quarter less time). Same values."""

    def forward(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.size * self.expansionFactor
        q, k, diag = self.map(ctx).split([size, size, 1], dim=-1)
        score = torch.einsum("iped, ipbd-> ipeb", q / math.sqrt(size), k)
        frames = torch.arange(score.shape[-1], device=score.device)
        score.mul_((frames[:, None] - frames[None, :]).abs())  # Transkun's "linear" length scaling
        score.diagonal(dim1=-2, dim2=-1).add_(diag.squeeze(-1))
        skip = (diag * 0.0)[..., 1:, 0]  # Transkun scores a frame in no note 0
        return score.permute(2, 3, 0, 1).contiguous(), skip.permute(2, 0, 1).contiguous()


class OneDnnLinear(torch.nn.Linear):
    """A linear layer run by oneDNN on its weight packed once into oneDNN's blocked layout, optionally with
    the GELU that follows it done in the same pass: on these 2 AMD cores PyTorch's default (MKL's sgemm,
    then GELU) took a third longer over Transkun's feed-forward blocks. Float32 throughout; the sums
    round differently from MKL's in the last bits."""

    packed: torch.Tensor
    activation: str = "none"  # or "gelu" (the exact, erf form, as Transkun's nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, self.activation, [], "none")


def onednn_available() -> bool:
    """Whether this PyTorch build has the oneDNN linear kernels `OneDnnLinear` calls."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _use_onednn_linears(model: torch.nn.Module) -> None:
    """Every linear layer of a CPU float32 model as a `OneDnnLinear`, and each linear → GELU pair fused."""
    for module in list(model.modules()):
        if type(module) is torch.nn.Linear:
            module.__class__ = OneDnnLinear
            module.packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach())
    for module in list(model.modules()):
        if isinstance(module, torch.nn.Sequential):
            for i in range(len(module) - 1):
                linear, gelu = module[i], module[i + 1]
                if isinstance(linear, OneDnnLinear) and type(gelu) is torch.nn.GELU and gelu.approximate == "none":
                    linear.activation = "gelu"
                    module[i + 1] = torch.nn.Identity()


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _use_fast_cpu_paths(model: torch.nn.Module) -> None:
    """Same model, faster kernels: fused attention (`FlatAttention`), one filterbank product
    (`ContiguousMel`), the time and pitch axes swapped in memory (`ContiguousBlock`), the interval scores
    written once (`InPlaceIntervalScorer`), no gradient checkpointing, and linear layers fed contiguous
    inputs — a transposed input makes a linear layer copy its weight once per time step instead of
    running one matrix product."""
    for module in model.modules():
        if type(module) is MultiHeadAttentionKernel and module.kernel is None:
            module.__class__ = FlatAttention
        elif type(module) is MelSpectrum:
            module.__class__ = ContiguousMel
        elif type(module) is BasicBlock and module.enabled == ["F", "T"]:
            module.__class__ = ContiguousBlock
        elif type(module) is ScaledInnerProductIntervalScorer and module.lengthScaling == "linear":
            module.__class__ = InPlaceIntervalScorer
        elif isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(_contiguous_input)
    model.backbone.useGradientCheckpoint = False  # a training aid: in inference only per-layer overhead


@dataclass
class OnsetEvidence:
    """How strongly the transcriber heard each key struck at each frame of the take.

    `scores[f, k]` is the best score Transkun's semi-CRF gives any note of key `LOWEST_KEY + k` that starts at
    frame `f` (the interval score its decoder compares with 0: a note is transcribed where it is positive).
    A key struck softly below the decision threshold scores a little under 0; a key not struck scores far
    below. Frame `f` is at `start_s + f * frame_s` seconds.
    """

    scores: np.ndarray
    frame_s: float
    start_s: float = 0.0

    def at(self, pitch: int, time_s: float, reach_s: float) -> float:
        """The strongest evidence of `pitch` being struck within `reach_s` of `time_s` (-inf outside the take)."""
        k = pitch - LOWEST_KEY
        if not 0 <= k < KEYS:
            return float("-inf")
        lo = max(int(np.floor((time_s - reach_s - self.start_s) / self.frame_s)), 0)
        hi = min(int(np.ceil((time_s + reach_s - self.start_s) / self.frame_s)) + 1, len(self.scores))
        return float(self.scores[lo:hi, k].max()) if hi > lo else float("-inf")


def onset_scores(score: np.ndarray) -> np.ndarray:
    """(frames, 88) best interval score per start frame and key, from one segment's semi-CRF scores
    (`score` is [end frame, start frame, symbol]; only end >= start are notes)."""
    keys = score[..., PEDAL_SYMBOLS : PEDAL_SYMBOLS + KEYS]
    return np.stack([keys[start:, start].max(axis=0) for start in range(len(keys))])


def device_onset_scores(score: torch.Tensor) -> np.ndarray:
    """`onset_scores` where the scores lie (a GPU), in blocks of start frames so that the half of the matrix
    that is no note is never read: copying a segment's whole score matrix (~170 MB) to the host and reducing it
    there made transcription on an H200 three times slower."""
    keys = score[..., PEDAL_SYMBOLS : PEDAL_SYMBOLS + KEYS]
    frames = keys.shape[0]
    best = torch.empty(frames, KEYS, dtype=torch.float32)
    for lo in range(0, frames, EVIDENCE_BLOCK):
        hi = min(lo + EVIDENCE_BLOCK, frames)
        ends = torch.arange(lo, frames, device=keys.device)[:, None]
        starts = torch.arange(lo, hi, device=keys.device)[None, :]
        block = keys[lo:, lo:hi].masked_fill((ends < starts)[..., None], float("-inf"))
        best[lo:hi] = block.amax(dim=0).float().cpu()
    return best.numpy()


NotePath = list[tuple[int, int]]  # (start frame, end frame) of each note of one symbol


def viterbi_backward(score: np.ndarray, skip: np.ndarray, forced_start: list[int] | None) -> list[NotePath]:
    """Transkun's semi-CRF decode (`viterbiBackward`) in NumPy: the same arithmetic in float32 and the same
    first-maximum choice, so the same path, without a thread pool woken for each of the ~700 small steps
    (on two busy cores that woken pool made Transkun's decode 10-40x slower than one thread).

    `score` is [end frame, start frame, symbol], `skip` [frames - 1, symbol] the score of a frame in no note;
    returns per symbol the (start, end) frames of its notes, read from `forced_start` (default 0) onwards.
    """
    frames, _, symbols = score.shape
    diagonal = np.diagonal(score, axis1=0, axis2=1).T
    single = diagonal * (diagonal > 0)  # a one-frame note counts where its score is positive
    best = np.empty((frames, symbols), dtype=np.float32)  # best[t]: best path score from frame t onwards
    best[-1] = single[-1]
    choice = np.empty((frames - 1, symbols), dtype=np.int64)  # -1: frame t in no note; k: note t..t+1+k
    for t in range(frames - 2, -1, -1):
        candidates = np.empty((frames - t, symbols), dtype=np.float32)
        candidates[0] = best[t + 1] + skip[t]
        np.add(best[t + 1 :], score[t + 1 :, t], out=candidates[1:])
        picked = candidates.argmax(axis=0)
        choice[t] = picked - 1
        best[t] = np.take_along_axis(candidates, picked[None], axis=0)[0] + single[t]
    starts = forced_start if forced_start is not None else [0] * symbols
    singles = (diagonal > 0).T.tolist()
    paths = []
    for symbol, (chosen, is_single) in enumerate(zip(choice.T.tolist(), singles, strict=True)):
        path, t = [], starts[symbol]
        while t < frames - 1:
            if is_single[t]:
                path.append((t, t))
            if chosen[t] < 0:
                t += 1
            else:
                path.append((t, t + 1 + chosen[t]))
                t += 1 + chosen[t]
        if is_single[-1]:
            path.append((frames - 1, frames - 1))
        paths.append(path)
    return paths


class HostSemiCRF(NeuralSemiCRFInterval):
    """Transkun's semi-CRF with a float32 host copy of its scores (`host_score`, a view on the CPU in fp32),
    made once per segment for the onset evidence and for the (backward) decode, `viterbi_backward`."""

    def __init__(self, score: torch.Tensor, noiseScore: torch.Tensor) -> None:
        super().__init__(score, noiseScore)
        self.host_score = host_array(score)

    def decode(self, forcedStartPos: list[int] | None = None, forward: bool = False) -> list[NotePath]:
        if forward:
            return super().decode(forcedStartPos, forward)
        return viterbi_backward(self.host_score, host_array(self.noiseScore), forcedStartPos)


def host_array(x: torch.Tensor) -> np.ndarray:
    """A float32 NumPy view (on the CPU) or copy of a tensor; bf16 widens to float32 exactly."""
    return x.detach().float().cpu().numpy()


class EvidenceStitcher:
    """Gathers the per-segment onset scores of one take into one `OnsetEvidence`: each frame is taken from
    the segment in which it lies nearest the middle (Transkun hears least well at a segment's edges)."""

    def __init__(self, frame_s: float) -> None:
        self.frame_s = frame_s
        self._segments: list[tuple[float, np.ndarray]] = []

    def add(self, begin_s: float, scores: np.ndarray) -> None:
        """One segment's scores; its frame 0 is at `begin_s` seconds of the take."""
        self._segments.append((begin_s, scores))

    def evidence(self, duration_s: float) -> OnsetEvidence:
        """The stitched evidence from time 0 to `duration_s`."""
        frames = int(np.ceil(duration_s / self.frame_s)) + 1
        scores = np.full((frames, KEYS), -np.inf, dtype=np.float32)
        distance = np.full(frames, np.inf)
        grid = np.arange(frames) * self.frame_s
        for begin_s, seg in self._segments:
            local = np.round((grid - begin_s) / self.frame_s).astype(int)
            inside = (local >= 0) & (local < len(seg))
            middle = begin_s + len(seg) * self.frame_s / 2
            nearer = inside & (np.abs(grid - middle) < distance)
            scores[nearer] = seg[local[nearer]]
            distance[nearer] = np.abs(grid - middle)[nearer]
        return OnsetEvidence(scores=scores, frame_s=self.frame_s)


@dataclass
class Transcription:
    """One transcription pass over a take: the notes, the pedal, and the evidence behind them."""

    notes: list[Note]
    pedal: list[PedalInterval]
    evidence: OnsetEvidence


class Transcriber:
    """Loads Transkun once; `transcribe(samples)` returns notes and sustain-pedal intervals;
    `transcribe_with_evidence(samples)` also keeps the per-key onset evidence of the same pass."""

    def __init__(self, config: TranscriberConfig | None = None) -> None:
        self.config = config or TranscriberConfig()
        self.device = pick_device(self.config.device)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        pretrained = resources.files("transkun") / "pretrained"
        conf_manager = moduleconf.parseFromFile(str(pretrained / "2.0.conf"))
        model_cls = conf_manager["Model"].module.TransKun
        self.model = model_cls(conf=conf_manager["Model"].config)
        checkpoint = torch.load(str(pretrained / "2.0.pt"), map_location="cpu", weights_only=False)
        state = checkpoint.get("best_state_dict", checkpoint.get("state_dict"))
        self.model.load_state_dict(state, strict=False)
        _use_fast_cpu_paths(self.model)
        self.model.eval().to(self.device)
        self.precision = resolve_precision(self.config.precision, self.device)
        if self.device == "cpu" and self.precision == "fp32" and onednn_available():
            _use_onednn_linears(self.model)
        self.sample_rate: int = int(self.model.fs)
        self.frame_s: float = self.model.hopSize / self.model.fs
        self._sink: list[np.ndarray] | None = None
        decode_segment = self.model.processFramesBatch

        def keep_evidence(frames: torch.Tensor):  # every segment Transkun decodes passes through here
            crf, ctx = decode_segment(frames)
            if self.device == "cpu":  # on a GPU Transkun's own decode stays (measured there; see README)
                crf = HostSemiCRF(crf.score, crf.noiseScore)
            if self._sink is not None:
                on_host = isinstance(crf, HostSemiCRF)
                self._sink.append(onset_scores(crf.host_score) if on_host else device_onset_scores(crf.score))
            return crf, ctx

        self.model.processFramesBatch = keep_evidence

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[np.ndarray]]:
        """Within this context, each segment Transkun decodes appends its `onset_scores` to the list given."""
        self._sink = sink = []
        try:
            yield sink
        finally:
            self._sink = None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the model runs in: bf16 autocast on CPU when `precision` is bf16, else nothing."""
        if self.precision == "bf16" and self.device == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def transcribe(self, samples: np.ndarray) -> tuple[list[Note], list[PedalInterval]]:
        """Transcribe mono float32 audio at `self.sample_rate`."""
        result = self.transcribe_with_evidence(samples)
        return result.notes, result.pedal

    @torch.inference_mode()
    def transcribe_with_evidence(self, samples: np.ndarray) -> Transcription:
        """Transcribe mono float32 audio at `self.sample_rate`, keeping the onset evidence of the same pass."""
        x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).reshape(-1, 1).to(self.device)
        with warnings.catch_warnings(), self.autocast(), self.recording() as segments:
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            hop_s = self.hop_for(len(samples))
            events = self.model.transcribe(x, stepInSecond=hop_s, segmentSizeInSecond=self.config.segment_s)
        stitcher = EvidenceStitcher(self.frame_s)
        for begin_s, scores in zip(self.segment_starts(len(samples), hop_s), segments, strict=True):
            stitcher.add(begin_s, scores)
        notes, pedal = split_events(events)
        return Transcription(notes, pedal, stitcher.evidence(len(samples) / self.sample_rate))

    def segment_starts(self, n_samples: int, hop_s: float) -> list[float]:
        """Where each segment of `model.transcribe` begins, in seconds of the take (its own arithmetic)."""
        hop, fs = self.model.hopSize, self.sample_rate
        pad_s = self.config.segment_s - hop_s
        padded = n_samples + 2 * math.ceil(pad_s * fs)
        step = math.ceil(hop_s * fs / hop) * hop
        return [i / fs - pad_s for i in range(0, padded, step)]

    def hop_for(self, n_samples: int) -> float:
        """The hop for a take of `n_samples`: `hop_s`, or the shortest longer hop up to `max_hop_s` that
        decodes fewer segments (each segment costs the same, however little of the take it holds)."""
        steps = max(int(round((self.config.max_hop_s - self.config.hop_s) / HOP_STEP_S)), 0)
        hops = [self.config.hop_s + i * HOP_STEP_S for i in range(steps + 1)]
        return min(hops, key=lambda h: len(self.segment_starts(n_samples, h)))


def split_events(events: list) -> tuple[list[Note], list[PedalInterval]]:
    """Turn Transkun events into notes (sorted by onset) and sustain-pedal intervals."""
    notes: list[Note] = []
    pedal: list[PedalInterval] = []
    for e in events:
        if e.pitch == SUSTAIN_PEDAL:
            pedal.append(PedalInterval(onset=round(float(e.start), 4), offset=round(float(e.end), 4)))
        elif e.pitch > 0:
            notes.append(
                Note(
                    onset=round(float(e.start), 4),
                    offset=round(float(e.end), 4),
                    pitch=int(e.pitch),
                    velocity=int(np.clip(round(float(e.velocity)), 1, 127)),
                )
            )
    notes.sort(key=lambda n: (n.onset, n.pitch))
    pedal.sort(key=lambda p: p.onset)
    return notes, pedal
