"""Images and audio for Gemma 4: llama.cpp's multimodal library (mtmd) driven with KV-prefix reuse.

llama-cpp-python's ``Gemma4ChatHandler`` clears the KV cache on every call and encodes every image again
each turn. Here the projector is loaded once with the model (:meth:`Projector.load`), each image or audio
clip is encoded once per loaded model (its embeddings are cached by sha256, bounded by
:data:`EMBED_CACHE_BYTES`), and a new turn re-uses the longest cached prefix of the previous prompt,
comparing text tokens *and* media (by content hash and chunk) position by position.

How the KV cache is mirrored: ``Llama.input_ids[:n_tokens]`` holds, as for text, the token at each
position; positions filled from image/audio embeddings hold :data:`MEDIA_TOKEN` (-1, never a real token)
and :attr:`Projector._spans` records which media chunk starts where. The text-only path of the engine
compares ``input_ids`` with its tokens, so it can never mistake an image position for text.

One turn (:meth:`Projector.prepare`):

1. every attachment is checked once per loaded model: kind sniffed from its bytes
   (:mod:`gemmadesk.core.media`), sha256 compared with the one recorded at attach time, decoded by mtmd
   (stb_image / miniaudio) to learn its size;
2. the conversation is rendered with the model's chat template, an unguessable per-load media marker
   before each message's text for each attachment, and cut at the markers; the text between them is
   tokenized by the engine's :class:`~gemmadesk.core.engine.prompt_tokens.PromptTokenizer` (so
   special-token strings typed into a message stay plain text, exactly as on the text-only path), and
   each attachment by ``mtmd_tokenize_from_parts`` on its own (its ``<|image>`` … ``<image|>`` wrapping
   and media chunks) with a *placeholder* bitmap (sizes only) — so trimming (``trim.fit_messages``)
   counts image and audio tokens exactly, without decoding anything again. (``mtmd_tokenize`` on the
   whole rendered text would parse special tokens in the message text too: a typed ``<turn|>`` would
   end the turn.)
3. the longest prefix still in the KV cache is kept; the rest is evaluated: text with ``Llama.eval``,
   media with ``mtmd_helper_decode_image_chunk`` from cached embeddings (encoding them first with
   ``mtmd_encode_chunk`` if this model has not seen them), all but the prompt's last token, which the
   engine's generation loop evaluates as for text.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmadesk.core.engine.errors import AttachmentError, EngineError
from gemmadesk.core.engine.llama_adapter import llama_module, log_mark, log_since, mtmd_module
from gemmadesk.core.engine.trim import Fitted, fit_messages
from gemmadesk.core.media import MediaError, check_stream, open_regular
from gemmadesk.core.mmproj import DEFAULT_IMAGE_MAX_TOKENS, ProjectorFileError, ProjectorInfo, read_projector
from gemmadesk.core.types import Attachment, ChatMessage

log = logging.getLogger(__name__)

MEDIA_TOKEN = -1
_OOM = re.compile(r"out of memory|failed to allocate|unable to allocate|alloc\w* .*failed|cudaMalloc", re.I)
EMBED_CACHE_BYTES = 512 * 2**20
DECODED_BYTES = 256 * 2**20  # decoded bitmaps kept during one turn (then freed)
_KIND_WORD = {"image": "images", "audio": "audio"}


class ProjectorError(EngineError):
    """The projector (mmproj) could not be loaded; the model still chats as text."""

    def __init__(self, message: str, detail: str = "", out_of_memory: bool = False) -> None:
        super().__init__(message, detail)
        self.out_of_memory = out_of_memory


@dataclass
class _Media:
    """An attachment this loaded model has seen: its size as decoded, and its embeddings once encoded."""

    kind: str
    nx: int  # image width, or audio samples at the projector's sample rate
    ny: int  # image height (1 for audio)
    embeddings: list[Any] | None = None  # one ctypes float array per mtmd chunk
    n_bytes: int = 0


@dataclass(frozen=True)
class MediaPrompt:
    """A prepared multimodal prompt: ``tokens`` mirrors every position (media = :data:`MEDIA_TOKEN`);
    all but the last are in the KV cache. ``evaluated``: positions computed this turn (the rest reused)."""

    tokens: list[int]
    fitted: Fitted
    evaluated: int
    encoded: int  # media chunks encoded this turn (0 when all came from the cache)
    stopped: bool = False


@dataclass(frozen=True)
class _Unit:
    key: int | tuple[str, int]  # a text token, or (media sha256, chunk index within that attachment)
    width: int
    chunk: Any = None  # the mtmd media chunk (None for text); valid while its _ChunkLists is not freed


Segments = Callable[[Sequence[ChatMessage], str], list[list[int]]]
"""``segments(messages, marker)``: the prompt of ``messages`` (whose contents start with one ``marker`` per
attachment) as text token ids, cut at each marker: one list more than there are markers."""


class _ChunkLists:
    """The mtmd chunk lists of one tokenization (one per attachment), freed together."""

    def __init__(self, mtmd: Any) -> None:
        self._mtmd = mtmd
        self.lists: list[Any] = []

    def free(self) -> None:
        lists, self.lists = self.lists, []
        for chunks in lists:
            self._mtmd.mtmd_input_chunks_free(chunks)


class Projector:
    """One loaded projector bound to one loaded ``Llama``. Not thread-safe (the engine's thread only)."""

    def __init__(self, mtmd: Any, ctx: Any, llm: Any, info: ProjectorInfo, marker: str, image_max_tokens: int) -> None:
        self._mtmd, self._mctx, self._llm, self.info = mtmd, ctx, llm, info
        self.marker = marker
        self.image_max_tokens = image_max_tokens
        self.supports_images = bool(mtmd.mtmd_support_vision(ctx))
        self.supports_audio = bool(mtmd.mtmd_support_audio(ctx))
        self._media: dict[str, _Media] = {}
        self._cache_order: OrderedDict[str, int] = OrderedDict()  # sha -> embedding bytes, LRU
        self._spans: dict[int, tuple[tuple[str, int], int]] = {}  # start position -> (media key, width)
        self._decoded: dict[str, Any] = {}  # sha -> mtmd bitmap, during one turn only
        self._atts: dict[str, Attachment] = {}  # sha -> the attachment (file) of this turn's messages
        self._n_embd = int(llama_module().llama_model_n_embd(llm.model))  # mtmd writes embeddings of this width
        self.encode_count = 0  # media chunks encoded since load (tests, benchmarks)
        self.encode_seconds = 0.0

    # ----------------------------------------------------------------------------------------- loading
    @classmethod
    def load(
        cls, llm: Any, path: str | Path, *, use_gpu: bool, n_threads: int, flash_attn: bool,
        image_max_tokens: int = DEFAULT_IMAGE_MAX_TOKENS,
    ) -> Projector:
        """Check and load ``path`` for ``llm``. Raises :class:`ProjectorError` (one sentence)."""
        path = Path(path)
        try:
            info = read_projector(path)
        except ProjectorFileError as exc:
            raise ProjectorError(str(exc)) from None
        n_embd = int(llama_module().llama_model_n_embd(llm.model))
        if info.n_embd_text != n_embd:
            raise ProjectorError(
                f"The projector “{path.name}” was made for a model {info.n_embd_text:,} wide, but this model is "
                f"{n_embd:,} wide; choose the projector (mmproj) that belongs to this model."
            )
        mtmd = mtmd_module()
        import llama_cpp

        n_ubatch = int(llama_cpp.llama_n_ubatch(llm.ctx))
        # Gemma 4 12B/26B/31B attend to an image's tokens both ways: the whole image must fit in one
        # micro-batch, so the image budget never exceeds n_ubatch.
        image_max_tokens = max(70, min(image_max_tokens, n_ubatch))
        marker = f"<__gemmadesk_media_{secrets.token_hex(8)}__>"
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.image_max_tokens = image_max_tokens
        marker_bytes = marker.encode()
        params.media_marker = marker_bytes
        mark = log_mark()
        ctx = mtmd.mtmd_init_from_file(str(path).encode(), llm.model, params)
        if not ctx:
            lines = log_since(mark)
            reason = next((ln for ln in reversed(lines) if "error" in ln.lower() or "failed" in ln.lower()), "")
            out_of_memory = any(_OOM.search(ln) for ln in lines)
            message = (
                f"There is not enough memory to load the projector “{path.name}” beside the model."
                if out_of_memory else f"llama.cpp could not load the projector “{path.name}”; download it again."
            )
            raise ProjectorError(message, detail="\n".join([*lines[-15:], reason]), out_of_memory=out_of_memory)
        return cls(mtmd, ctx, llm, info, marker, image_max_tokens)

    def close(self) -> None:
        self._free_decoded()
        self._media.clear()
        self._cache_order.clear()
        self._spans.clear()
        ctx, self._mctx = self._mctx, None
        if ctx:
            self._mtmd.mtmd_free(ctx)

    def kinds_text(self) -> str:
        kinds = [k for k, ok in (("images", self.supports_images), ("audio", self.supports_audio)) if ok]
        return " and ".join(kinds) or "nothing"

    # ----------------------------------------------------------------------------------------- a turn
    def count(self, messages: Sequence[ChatMessage], segments: Segments) -> int:
        """Prompt tokens (text + image + audio) of ``messages``: what trimming and the context count."""
        try:
            self._resolve(messages)
            return len(self._tokenize(messages, segments)[1])
        finally:
            self._free_decoded()

    def prepare(
        self,
        messages: Sequence[ChatMessage],
        segments: Segments,
        n_ctx: int,
        max_tokens: int,
        min_reply: int,
        stop: threading.Event | None = None,
    ) -> MediaPrompt:
        """Fit ``messages`` into the context, then evaluate all but the last prompt token, re-using what
        the KV cache still holds. Raises :class:`AttachmentError` / ``ContextOverflowError``."""
        try:
            self._resolve(messages)
            fitted = fit_messages(messages, lambda ms: self._tokenize(ms, segments)[1], n_ctx, max_tokens, min_reply)
            n_system = 1 if messages and messages[0].role == "system" else 0
            kept = list(messages[:n_system]) + list(messages[n_system:])[fitted.dropped :]
            chunks, tokens, units = self._tokenize(kept, segments, want_units=True)
            try:
                evaluated, encoded, stopped = self._evaluate(tokens, units, stop)
            finally:
                chunks.free()
            return MediaPrompt(tokens, Fitted(tokens, fitted.dropped, fitted.notice), evaluated, encoded, stopped)
        finally:
            self._free_decoded()

    # -------------------------------------------------------------------------------- attachments
    def _resolve(self, messages: Sequence[ChatMessage]) -> None:
        self._atts = {}
        for message in messages:
            for att in message.attachments:
                self._atts.setdefault(att.sha256, att)
                if att.sha256 not in self._media:
                    self._media[att.sha256] = self._probe(att)
                elif not (self.supports_images if att.kind == "image" else self.supports_audio):
                    raise self._refuse_kind(att.kind, att.display_name)

    def _bitmap(self, sha: str) -> Any:
        """The decoded bitmap of attachment ``sha``, decoding its file again if it is not held."""
        bitmap = self._decoded.get(sha)
        if bitmap is None:
            att = self._atts[sha]
            data, name = self._read(att)
            bitmap = self._decode(data, name, att.kind)
            self._decoded[sha] = bitmap
        return bitmap

    def _refuse_kind(self, kind: str, name: str) -> AttachmentError:
        return AttachmentError(
            f"This model's projector cannot take {_KIND_WORD[kind]} (it takes {self.kinds_text()}), so "
            f"“{name}” was not sent. Gemma 4 E2B, E4B and 12B hear audio; every Gemma 4 size sees images."
        )

    def _read(self, att: Attachment) -> tuple[bytes, str]:
        """The attachment's bytes, checked: readable, bounded, the kind it claims, unchanged since attached."""
        path = Path(att.path)
        name = att.display_name  # the name it was attached as (the stored file is named by its hash)
        try:
            fh, size = open_regular(path)
            with fh:
                info = check_stream(fh, size, name)
                data = fh.read(size + 1)
        except MediaError as exc:
            raise AttachmentError(str(exc)) from None
        except OSError as exc:
            raise AttachmentError(
                f"The attached file “{name}” cannot be read ({exc.strerror or exc}); attach it again."
            ) from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != att.sha256:
            raise AttachmentError(
                f"The attached file “{name}” has changed since it was attached, so it was not sent; attach it again."
            )
        if info.kind != att.kind:
            raise AttachmentError(f"“{name}” was attached as {att.kind} but is {info.kind}; attach it again.")
        if info.kind == "image" and not self.supports_images or info.kind == "audio" and not self.supports_audio:
            raise self._refuse_kind(info.kind, name)
        return data, name

    def _decode(self, data: bytes, name: str, kind: str) -> Any:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        mark = log_mark()
        bitmap = self._mtmd.mtmd_helper_bitmap_init_from_buf(self._mctx, buf, len(data), False)
        if not bitmap:
            raise AttachmentError(
                f"“{name}” could not be decoded as {'an image' if kind == 'image' else 'audio'}; the file may be "
                "damaged. Open it in another program, save a copy and attach that.",
                detail="\n".join(log_since(mark)[-5:]),
            )
        return bitmap

    def _probe(self, att: Attachment) -> _Media:
        data, name = self._read(att)
        bitmap = self._decode(data, name, att.kind)
        is_audio = bool(self._mtmd.mtmd_bitmap_is_audio(bitmap))
        nx, ny = int(self._mtmd.mtmd_bitmap_get_nx(bitmap)), int(self._mtmd.mtmd_bitmap_get_ny(bitmap))
        if is_audio:
            nx, ny = int(self._mtmd.mtmd_bitmap_get_n_bytes(bitmap)) // 4, 1
            if nx < 160:  # less than 10 ms: the audio encoder has nothing to work on
                self._mtmd.mtmd_bitmap_free(bitmap)
                raise AttachmentError(
                    f"“{name}” contains no sound (it is shorter than 10 ms); attach a longer recording."
                )
        if is_audio != (att.kind == "audio"):
            self._mtmd.mtmd_bitmap_free(bitmap)
            raise AttachmentError(f"“{name}” could not be decoded as {att.kind}; attach it again.")
        self._keep_decoded(att.sha256, bitmap, nx * ny * (4 if is_audio else 3))
        return _Media(att.kind, nx, ny)

    def _keep_decoded(self, sha: str, bitmap: Any, n_bytes: int) -> None:
        held = sum(int(self._mtmd.mtmd_bitmap_get_n_bytes(b)) for b in self._decoded.values())
        if held + n_bytes > DECODED_BYTES or sha in self._decoded:
            self._mtmd.mtmd_bitmap_free(bitmap)
        else:
            self._decoded[sha] = bitmap

    def _free_decoded(self) -> None:
        decoded, self._decoded = self._decoded, {}
        for bitmap in decoded.values():
            self._mtmd.mtmd_bitmap_free(bitmap)

    # ------------------------------------------------------------------------------------ tokenizing
    def _with_markers(self, messages: Sequence[ChatMessage]) -> list[ChatMessage]:
        """Each attachment becomes the media marker, before the message's text (Gemma 4's advice)."""
        out = []
        for m in messages:
            content = m.content.replace(self.marker, "")  # unguessable per load; still never let text add one
            out.append(ChatMessage(m.role, self.marker * len(m.attachments) + content))
        return out

    def _tokenize(
        self,
        messages: Sequence[ChatMessage],
        segments: Segments,
        want_units: bool = False,
        real: set[str] | None = None,
    ) -> tuple[_ChunkLists, list[int], list[_Unit]]:
        """(the mtmd chunk lists — empty unless ``want_units`` (caller frees), flattened tokens, units)."""
        texts = segments(self._with_markers(messages), self.marker)
        atts = [att for m in messages for att in m.attachments]
        if len(texts) != len(atts) + 1:
            raise AttachmentError(
                "The model's chat template left out a message that carries attachments; remove the attachments "
                "or choose another model file.",
                detail=f"{len(texts) - 1} media markers in the rendered prompt for {len(atts)} attachments",
            )
        lists = _ChunkLists(self._mtmd)
        tokens: list[int] = []
        units: list[_Unit] = []
        try:
            for text, att in zip(texts, atts, strict=False):
                tokens += text
                units += [_Unit(t, 1) for t in text]
                chunks = self._media_chunks(att, real or set())
                lists.lists.append(chunks)
                self._flatten(chunks, att.sha256, tokens, units)
            tokens += texts[-1]
            units += [_Unit(t, 1) for t in texts[-1]]
        except BaseException:
            lists.free()
            raise
        if not want_units:
            lists.free()
        return lists, tokens, units

    def _media_chunks(self, att: Attachment, real: set[str]) -> Any:
        """One attachment's mtmd chunks (``<|image>``, the media, ``<image|>``): decoded when its hash is in
        ``real`` (to encode), else from a size-only placeholder bitmap. The caller frees the list."""
        m = self._mtmd
        media = self._media[att.sha256]
        if att.sha256 in real:
            bitmap, placeholder = self._bitmap(att.sha256), False
        elif media.kind == "audio":
            bitmap, placeholder = m.mtmd_bitmap_init_from_audio(media.nx, None), True
        else:
            bitmap, placeholder = m.mtmd_bitmap_init(media.nx, media.ny, None), True
        chunks = m.mtmd_input_chunks_init()
        try:
            m.mtmd_bitmap_set_id(bitmap, att.sha256.encode())
            part = m.mtmd_input_part()
            part.bitmap = bitmap  # text stays NULL: a media part
            parts = (ctypes.POINTER(m.mtmd_input_part) * 1)(ctypes.pointer(part))
            mark = log_mark()
            rc = m.mtmd_tokenize_from_parts(self._mctx, chunks, parts, 1, False)
            if rc != 0:
                raise AttachmentError(
                    "The attachments could not be prepared for the model; remove them and attach them again.",
                    detail="\n".join(log_since(mark)[-5:]) + f"\nmtmd_tokenize_from_parts returned {rc}",
                )
        except BaseException:
            m.mtmd_input_chunks_free(chunks)
            raise
        finally:
            if placeholder:
                m.mtmd_bitmap_free(bitmap)
        return chunks

    def _flatten(self, chunks: Any, sha: str, tokens: list[int], units: list[_Unit]) -> None:
        """Append one attachment's chunks to ``tokens``/``units`` (a long recording has several media chunks)."""
        m = self._mtmd
        index = 0
        for i in range(int(m.mtmd_input_chunks_size(chunks))):
            chunk = m.mtmd_input_chunks_get(chunks, i)
            if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                text_tokens = [int(ptr[j]) for j in range(n.value)]
                tokens += text_tokens
                units += [_Unit(t, 1) for t in text_tokens]
                continue
            width = int(m.mtmd_input_chunk_get_n_pos(chunk))
            tokens += [MEDIA_TOKEN] * width
            units.append(_Unit((sha, index), width, chunk))
            index += 1

    # ------------------------------------------------------------------------------------ evaluating
    def _reusable(self, units: list[_Unit]) -> int:
        """Positions at the start of ``units`` that the KV cache already holds (text tokens and media)."""
        llm = self._llm
        n_cached = int(llm.n_tokens)
        ids = llm.input_ids
        pos = 0
        for unit in units:
            if isinstance(unit.key, int):
                if pos >= n_cached or int(ids[pos]) != unit.key:
                    break
            else:
                span = self._spans.get(pos)
                end = pos + unit.width
                if span != (unit.key, unit.width) or end > n_cached or any(int(t) != MEDIA_TOKEN for t in ids[pos:end]):
                    break
            pos += unit.width
        return pos

    def _evaluate(self, tokens: list[int], units: list[_Unit], stop: threading.Event | None) -> tuple[int, int, bool]:
        import llama_cpp

        llm = self._llm
        total = len(tokens)
        if not units or not isinstance(units[-1].key, int):
            raise AttachmentError("The prompt must end with text; send a message with your attachments.")
        reuse = min(self._reusable(units), total - 1)
        n_swa = int(llama_cpp.llama_model_n_swa(llm.model))
        if reuse > 0 and n_swa > 0:
            mem = llama_cpp.llama_get_memory(llm.ctx)
            if int(llama_cpp.llama_memory_seq_pos_min(mem, 0)) > max(0, reuse - n_swa):
                reuse = 0  # the sliding-window cache no longer holds what the next token must see
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), -1, reuse, -1)
        llm.n_tokens = reuse
        self._spans = {p: s for p, s in self._spans.items() if p + s[1] <= reuse}
        # Walk the units after the reused prefix; everything but the prompt's last token is evaluated.
        pos, encoded, text_run = 0, 0, []
        for unit in units:
            end = pos + unit.width
            if end <= reuse:
                pos = end
                continue
            if isinstance(unit.key, int):
                if end < total:
                    text_run.append(unit.key)
            else:
                if text_run:
                    llm.eval(text_run)
                    text_run = []
                if stop is not None and stop.is_set():
                    return llm.n_tokens - reuse, encoded, True
                encoded += self._decode_media(unit)
            pos = end
        if text_run:
            llm.eval(text_run)
        return total - reuse, encoded, False

    def _decode_media(self, unit: _Unit) -> int:
        """Put one media chunk's embeddings into the KV cache at ``n_tokens``; returns 1 if it had to be
        encoded first (0 when this model had encoded it before)."""
        import llama_cpp

        m, llm = self._mtmd, self._llm
        assert isinstance(unit.key, tuple)
        sha, index = unit.key
        chunk = unit.chunk
        n_tokens = int(m.mtmd_input_chunk_get_n_tokens(chunk))
        embedding, encoded = self._embedding(sha, index, n_tokens), 0
        if embedding is None:
            embedding, encoded = self._encode(sha, index, n_tokens), 1
        n_past = int(llm.n_tokens)
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), -1, n_past, -1)
        new_n_past = llama_cpp.llama_pos(0)
        mark = log_mark()
        rc = m.mtmd_helper_decode_image_chunk(
            self._mctx, llm.ctx, chunk, embedding, n_past, 0, int(llm.n_batch),
            ctypes.byref(new_n_past), m.mtmd_helper_post_decode_callback(), None,  # no callback (NULL)
        )
        if rc != 0:
            raise AttachmentError(
                "The model could not take in an attachment (llama.cpp failed while decoding it); try a shorter "
                "context or fewer attachments.",
                detail="\n".join(log_since(mark)[-5:]) + f"\ndecode returned {rc}",
            )
        width = int(new_n_past.value) - n_past
        llm.input_ids[n_past : n_past + width] = MEDIA_TOKEN
        llm.n_tokens = n_past + width
        self._spans[n_past] = ((sha, index), width)
        return encoded

    def _embedding(self, sha: str, index: int, n_tokens: int) -> Any:
        media = self._media.get(sha)
        if media is None or media.embeddings is None or index >= len(media.embeddings):
            return None
        emb = media.embeddings[index]
        if emb is None or len(emb) != n_tokens * self._n_embd:
            return None
        self._cache_order.move_to_end(sha)
        return emb

    def _encode(self, sha: str, index: int, n_tokens: int) -> Any:
        """Encode every chunk of attachment ``sha`` (a long recording has several) and cache them."""
        m = self._mtmd
        media = self._media[sha]
        chunks, _, units = self._tokenize([ChatMessage("user", "", (self._atts[sha],))], _cut_only,
                                          want_units=True, real={sha})
        units = [u for u in units if not isinstance(u.key, int)]
        try:
            embeddings: list[Any] = []
            for unit in units:
                chunk = unit.chunk
                mark = log_mark()
                started = time.perf_counter()
                rc = m.mtmd_encode_chunk(self._mctx, chunk)
                self.encode_seconds += time.perf_counter() - started
                if rc != 0:
                    raise AttachmentError(
                        f"The model's projector failed to read an attached {media.kind} file; attach it again.",
                        detail="\n".join(log_since(mark)[-5:]) + f"\nmtmd_encode_chunk returned {rc}",
                    )
                n = int(m.mtmd_input_chunk_get_n_tokens(chunk)) * self._n_embd
                out = (ctypes.c_float * n)()
                ctypes.memmove(out, m.mtmd_get_output_embd(self._mctx), n * 4)
                embeddings.append(out)
                self.encode_count += 1
        finally:
            chunks.free()
            bitmap = self._decoded.pop(sha, None)  # encoded: the decoded pixels/samples are not needed again
            if bitmap is not None:
                m.mtmd_bitmap_free(bitmap)
        media.embeddings = embeddings
        media.n_bytes = sum(len(e) * 4 for e in embeddings)
        self._cache_order[sha] = media.n_bytes
        self._cache_order.move_to_end(sha)
        self._evict()
        emb = embeddings[index] if index < len(embeddings) else None
        if emb is None or len(emb) != n_tokens * self._n_embd:
            raise AttachmentError("An attachment changed size between two readings; attach it again.")
        return emb

    def _evict(self) -> None:
        while sum(self._cache_order.values()) > EMBED_CACHE_BYTES and len(self._cache_order) > 1:
            sha, _ = self._cache_order.popitem(last=False)
            media = self._media.get(sha)
            if media is not None:
                media.embeddings, media.n_bytes = None, 0



def _cut_only(messages: Sequence[ChatMessage], marker: str) -> list[list[int]]:
    """Segments for an attachment on its own (encoding): no text around the markers."""
    return [[] for _ in range(sum(m.content.count(marker) for m in messages) + 1)]
