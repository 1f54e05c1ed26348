"""
ONNX export of a BERT encoder (Contriever layout) for bench/transformers-js.bench.ts: writes the
Hugging Face folder transformers.js loads (config.json, tokenizer files, onnx/model.onnx), so the
same weights run in our tfjs encoder and in ONNX Runtime Web side by side.

There is no internet here, so no ONNX model can be downloaded and Python `transformers` is not
installed: the encoder below is written out in plain PyTorch with Hugging Face BertModel's
arithmetic (post-LayerNorm layers, exact-erf or tanh GELU, additive padding mask at float32's
minimum), and the weights are read from model.safetensors by a few lines of header parsing
(no `safetensors` package either). `--check` holds the export's own torch forward against a
../shared/fixtures/hf-reference folder's expected embeddings before writing anything.

Modes:
  --from DIR           weights and config of an existing checkpoint folder (e.g. public/models/demo/retriever)
  --random-bert-base   bert-base shape (Contriever: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 30522),
                       seeded random weights (timing only); also writes them as model.safetensors so our
                       loader reads the very same numbers
  --tokenizer DIR      copy tokenizer.json / tokenizer_config.json / special_tokens_map.json / vocab.txt from DIR
                       (default: the --from folder when it has them)

Lab step only (Python is not available in CI, and the output folder .onnx/ is gitignored):

  /usr/bin/python3 scripts/reference/export_bert_onnx.py --from ../shared/fixtures/hf-reference/bert-tiny --out .onnx/bert-tiny --check
  /usr/bin/python3 scripts/reference/export_bert_onnx.py --from public/models/demo/retriever --out .onnx/demo-retriever
  /usr/bin/python3 scripts/reference/export_bert_onnx.py --random-bert-base --tokenizer public/models/tokenizers/bert-base-uncased --out .onnx/bert-base-random
"""
import argparse
import json
import math
import os
import shutil
import struct

import numpy as np
import torch
from torch import nn

DTYPES = {'F32': np.float32, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32}
TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt']


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        start, end = info['data_offsets']
        raw = data[base + start : base + end]
        if info['dtype'] == 'BF16':
            # bfloat16 = the top half of a float32.
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[info['dtype']])
        out[name] = torch.from_numpy(arr.astype(np.float32 if arr.dtype.kind == 'f' else arr.dtype).reshape(info['shape']).copy())
    return out


def write_safetensors(path, tensors):
    header = {}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Bert(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, ff = cfg['hidden_size'], cfg['intermediate_size']
        self.word = nn.Embedding(cfg['vocab_size'], d)
        self.pos = nn.Embedding(cfg['max_position_embeddings'], d)
        self.token_type = nn.Embedding(cfg.get('type_vocab_size', 2), d)
        eps = cfg.get('layer_norm_eps', 1e-12)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList()
        for _ in range(cfg['num_hidden_layers']):
            layer = nn.Module()
            layer.q, layer.k, layer.v, layer.o = (nn.Linear(d, d) for _ in range(4))
            layer.ln1 = nn.LayerNorm(d, eps=eps)
            layer.up, layer.down = nn.Linear(d, ff), nn.Linear(ff, d)
            layer.ln2 = nn.LayerNorm(d, eps=eps)
            self.layers.append(layer)

    def hf_names(self):
        """Our module's parameters under Hugging Face BertModel's names (no `bert.` prefix)."""
        names = {
            'embeddings.word_embeddings.weight': self.word.weight,
            'embeddings.position_embeddings.weight': self.pos.weight,
            'embeddings.token_type_embeddings.weight': self.token_type.weight,
            'embeddings.LayerNorm.weight': self.ln.weight,
            'embeddings.LayerNorm.bias': self.ln.bias,
        }
        for i, l in enumerate(self.layers):
            p = f'encoder.layer.{i}.'
            for hf, mod in [
                ('attention.self.query', l.q),
                ('attention.self.key', l.k),
                ('attention.self.value', l.v),
                ('attention.output.dense', l.o),
                ('intermediate.dense', l.up),
                ('output.dense', l.down),
            ]:
                names[p + hf + '.weight'] = mod.weight
                names[p + hf + '.bias'] = mod.bias
            for hf, mod in [('attention.output.LayerNorm', l.ln1), ('output.LayerNorm', l.ln2)]:
                names[p + hf + '.weight'] = mod.weight
                names[p + hf + '.bias'] = mod.bias
        return names

    def load_hf(self, weights):
        # Contriever checkpoints may carry the `bert.` prefix; pooler and heads are not part of the encoder.
        weights = {(k[5:] if k.startswith('bert.') else k): v for k, v in weights.items()}
        with torch.no_grad():
            for name, param in self.hf_names().items():
                if name not in weights:
                    raise SystemExit(f'checkpoint lacks {name}')
                if tuple(weights[name].shape) != tuple(param.shape):
                    raise SystemExit(f'{name}: shape {tuple(weights[name].shape)} but config implies {tuple(param.shape)}')
                param.copy_(weights[name])

    def forward(self, input_ids, attention_mask, token_type_ids):
        cfg = self.cfg
        heads = cfg['num_attention_heads']
        b, n = input_ids.shape
        d = cfg['hidden_size']
        dh = d // heads
        positions = torch.arange(n, device=input_ids.device).unsqueeze(0)
        h = self.ln(self.word(input_ids) + self.pos(positions) + self.token_type(token_type_ids))
        bias = (1.0 - attention_mask.to(torch.float32))[:, None, None, :] * torch.finfo(torch.float32).min
        act = (lambda x: nn.functional.gelu(x)) if cfg.get('hidden_act', 'gelu') == 'gelu' else (lambda x: nn.functional.gelu(x, approximate='tanh'))
        for l in self.layers:
            split = lambda x: x.view(b, n, heads, dh).transpose(1, 2)
            q, k, v = split(l.q(h)), split(l.k(h)), split(l.v(h))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + bias
            ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, n, d)
            h = l.ln1(h + l.o(ctx))
            h = l.ln2(h + l.down(act(l.up(h))))
        return h


def mean_pool(hidden, mask):
    m = mask.to(torch.float32).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def check_fixture(model, folder):
    expected = read_safetensors(os.path.join(folder, 'expected.safetensors'))
    ids, mask = expected['p_input_ids'].long(), expected['p_attention_mask'].long()
    with torch.no_grad():
        emb = mean_pool(model(ids, mask, torch.zeros_like(ids)), mask)
    ref = expected['p_embedding']
    err = ((emb - ref).abs().max() / ref.abs().max()).item()
    print(f'check against {folder}/expected.safetensors p_embedding: max |a-b| / max |b| = {err:.2e}')
    if err > 1e-5:
        raise SystemExit('the export model does not reproduce the reference; nothing written')


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--from', dest='source')
    src.add_argument('--random-bert-base', action='store_true')
    ap.add_argument('--tokenizer')
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--opset', type=int, default=14)
    ap.add_argument('--check', action='store_true', help='hold the torch forward against the folder expected.safetensors first')
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    if args.source:
        with open(os.path.join(args.source, 'config.json')) as f:
            cfg = json.load(f)
        model = Bert(cfg)
        model.load_hf(read_safetensors(os.path.join(args.source, 'model.safetensors')))
    else:
        cfg = {
            'architectures': ['BertModel'],
            'model_type': 'bert',
            'hidden_size': 768,
            'num_hidden_layers': 12,
            'num_attention_heads': 12,
            'intermediate_size': 3072,
            'max_position_embeddings': 512,
            'type_vocab_size': 2,
            'vocab_size': 30522,
            'layer_norm_eps': 1e-12,
            'hidden_act': 'gelu',
            'pad_token_id': 0,
            'hidden_dropout_prob': 0.0,
            'attention_probs_dropout_prob': 0.0,
            'initializer_range': 0.02,
        }
        model = Bert(cfg)
        # BERT's initialisation (normal 0.02, LayerNorm 1/0): activations of a realistic scale.
        with torch.no_grad():
            for name, p in model.hf_names().items():
                if 'LayerNorm.weight' in name:
                    p.fill_(1.0)
                elif name.endswith('bias'):
                    p.zero_()
                else:
                    p.normal_(0.0, 0.02)
    model.eval()
    if args.check:
        check_fixture(model, args.source)

    os.makedirs(os.path.join(args.out, 'onnx'), exist_ok=True)
    with open(os.path.join(args.out, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
    if args.random_bert_base:
        write_safetensors(os.path.join(args.out, 'model.safetensors'), model.hf_names())
    else:
        shutil.copyfile(os.path.join(args.source, 'model.safetensors'), os.path.join(args.out, 'model.safetensors'))
    tok_dir = args.tokenizer or args.source
    for name in TOKENIZER_FILES:
        if tok_dir and os.path.exists(os.path.join(tok_dir, name)):
            shutil.copyfile(os.path.join(tok_dir, name), os.path.join(args.out, name))

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    path = os.path.join(args.out, 'onnx', 'model.onnx')
    with torch.no_grad():
        torch.onnx.export(
            model,
            (ids, mask, torch.zeros_like(ids)),
            path,
            input_names=['input_ids', 'attention_mask', 'token_type_ids'],
            output_names=['last_hidden_state'],
            dynamic_axes={
                'input_ids': {0: 'batch_size', 1: 'sequence_length'},
                'attention_mask': {0: 'batch_size', 1: 'sequence_length'},
                'token_type_ids': {0: 'batch_size', 1: 'sequence_length'},
                'last_hidden_state': {0: 'batch_size', 1: 'sequence_length'},
            },
            opset_version=args.opset,
            do_constant_folding=True,
        )
    print(f'wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB), opset {args.opset}')


if __name__ == '__main__':
    main()
