"""
PyTorch reference for bench/train-memory.ts: the peak memory of one FiD training step of a T5
with t5-small's dimensions (d_model 512, 6+6 layers, 8 heads, d_ff 2048, vocab 32128, ReLU FFN,
tied head, relative position bias), eager float32 on the CPU, as Hugging Face's T5 computes it
(no dropout, as our model has none): forward over batch·k passages encoded independently and
fused, teacher-forced decoder over `target` tokens, mean token cross-entropy, backward,
clip_grad_norm_(1.0), torch.optim.AdamW step, zero_grad(set_to_none=True).

Peak = the largest number of bytes held by the CPU allocator during the step (PyTorch's CPU
allocator does not cache, so this is live tensors plus the few scratch buffers kernels allocate),
read from torch.profiler (profile_memory=True): the running sum, in time order, of the profiler's
raw allocation records (one '[memory]' record per allocation or free, with its size and time), on
top of what was live before it (parameters, AdamW moments and the inputs, after a warm-up step).
The same quantity as bench/train-memory.ts's "peak MiB (buffers)".

`peakBytesOpSelf` is the accounting this script used until session 12: the running sum of each
op's *self* memory (its allocations net of its frees) placed at the op's start. It undercounts
whenever an enclosing event frees what its children allocated: AdamW.step's self is about
−2 × the parameter bytes (the sqrt and division temporaries it frees), all counted before the
temporaries themselves, so AdamW's peak (gradients + two temporaries of the embedding) vanished
and batch 1 read 925 MiB instead of 1,049 MiB at k = 2 × 64.

Diagnostic only. Needs PyTorch (Debian: apt-get install python3-torch, then /usr/bin/python3):

  /usr/bin/python3 scripts/reference/train_memory_torch.py [--passages 2] [--length 128] [--target 32] [--batches 1,4]
"""
import argparse
import json
import math
import time

import torch
from torch import nn
import torch.nn.functional as F

D, H, DKV, DFF, V, LAYERS, BUCKETS, MAXDIST = 512, 8, 64, 2048, 32128, 6, 32, 128


def bucket(rel, bidirectional):
    ret = 0
    n = BUCKETS
    if bidirectional:
        n //= 2
        ret = (rel > 0).long() * n
        rel = rel.abs()
    else:
        rel = -torch.min(rel, torch.zeros_like(rel))
    exact = n // 2
    small = rel < exact
    large = exact + (torch.log(rel.float() / exact) / math.log(MAXDIST / exact) * (n - exact)).long()
    large = torch.min(large, torch.full_like(large, n - 1))
    return ret + torch.where(small, rel, large)


class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(D))

    def forward(self, x):  # HF T5LayerNorm
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + 1e-6))


class Attention(nn.Module):
    def __init__(self, relative):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, H * DKV, bias=False) for _ in range(4))
        self.rel = nn.Embedding(BUCKETS, H) if relative else None

    def bias(self, lq, lk, bidirectional):
        rel = torch.arange(lk)[None, :] - torch.arange(lq)[:, None]
        return self.rel(bucket(rel, bidirectional)).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x, kv, bias):
        b = x.shape[0]
        q = self.q(x).view(b, -1, H, DKV).transpose(1, 2)
        k = self.k(kv).view(b, -1, H, DKV).transpose(1, 2)
        v = self.v(kv).view(b, -1, H, DKV).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(3, 2)) + bias
        probs = F.softmax(scores.float(), dim=-1)
        return self.o(torch.matmul(probs, v).transpose(1, 2).contiguous().view(b, -1, H * DKV))


class FFN(nn.Module):
    def __init__(self):
        super().__init__()
        self.wi = nn.Linear(D, DFF, bias=False)
        self.wo = nn.Linear(DFF, D, bias=False)

    def forward(self, x):
        return self.wo(F.relu(self.wi(x)))


class T5(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(V, D)
        self.enc = nn.ModuleList(nn.ModuleDict({'n0': RMSNorm(), 'att': Attention(i == 0), 'n1': RMSNorm(), 'ffn': FFN()}) for i in range(LAYERS))
        self.enc_norm = RMSNorm()
        self.dec = nn.ModuleList(nn.ModuleDict({'n0': RMSNorm(), 'att': Attention(i == 0), 'n1': RMSNorm(), 'cross': Attention(False), 'n2': RMSNorm(), 'ffn': FFN()}) for i in range(LAYERS))
        self.dec_norm = RMSNorm()

    def forward(self, ids, mask, k, labels):
        rows, length = ids.shape
        x = self.shared(ids)
        ext = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        bias = self.enc[0]['att'].bias(length, length, True) + ext
        for blk in self.enc:
            h = blk['n0'](x)
            x = x + blk['att'](h, h, bias)
            x = x + blk['ffn'](blk['n1'](x))
        enc = self.enc_norm(x).view(rows // k, k * length, D)  # FiD fusion
        enc_mask = mask.view(rows // k, k * length)
        cross_bias = (1.0 - enc_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        t = labels.shape[1]
        dec_in = torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1]], 1)
        y = self.shared(dec_in)
        causal = torch.triu(torch.full((t, t), torch.finfo(torch.float32).min), 1)[None, None]
        self_bias = self.dec[0]['att'].bias(t, t, False) + causal
        for blk in self.dec:
            h = blk['n0'](y)
            y = y + blk['att'](h, h, self_bias)
            y = y + blk['cross'](blk['n1'](y), enc, cross_bias)
            y = y + blk['ffn'](blk['n2'](y))
        logits = F.linear(self.dec_norm(y) * D ** -0.5, self.shared.weight)  # tied head
        return F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)


def measure(batch, k, length, target):
    torch.manual_seed(0)
    model = T5()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=False)
    ids = torch.randint(2, V, (batch * k, length))
    mask = torch.ones_like(ids)
    labels = torch.randint(2, V, (batch, target))

    def step():
        loss = model(ids, mask, k, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    loss = step()  # creates the AdamW moments
    t0 = time.perf_counter()
    step()
    step_ms = (time.perf_counter() - t0) * 1000
    params = sum(p.numel() for p in model.parameters())
    state = sum(t.numel() for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)
    start = 4 * (params + state) + 8 * (ids.numel() + mask.numel() + labels.numel())
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # The raw allocation records, in time order (ties keep the recorded order).
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == '[memory]']
    order = sorted(range(len(records)), key=lambda i: (records[i].start_us(), i))
    running, peak = 0, 0
    for i in order:
        running += records[i].nbytes()
        peak = max(peak, running)
    # The older accounting (see the module comment): op self memory at the op's start.
    events = sorted((e for e in prof.profiler.function_events if e.self_cpu_memory_usage != 0), key=lambda e: e.time_range.start)
    self_running, self_peak = 0, 0
    for e in events:
        self_running += e.self_cpu_memory_usage
        self_peak = max(self_peak, self_running)
    return {'batch': batch, 'passages': k, 'passageLength': length, 'targetLength': target, 'loss': loss,
            'parameters': params, 'startBytes': start, 'peakBytes': start + peak, 'endDelta': running, 'memoryRecords': len(records),
            'peakBytesOpSelf': start + self_peak, 'stepMs': step_ms}


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--passages', type=int, default=2)
    ap.add_argument('--length', type=int, default=128)
    ap.add_argument('--target', type=int, default=32)
    ap.add_argument('--batches', default='1,4')
    a = ap.parse_args()
    torch.set_num_threads(1)
    for b in map(int, a.batches.split(',')):
        r = measure(b, a.passages, a.length, a.target)
        r['peakMiB'] = r['peakBytes'] / 2 ** 20
        r['peakMiBOpSelf'] = r['peakBytesOpSelf'] / 2 ** 20
        print(json.dumps(r), flush=True)
