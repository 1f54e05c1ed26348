"""
Reference for scripts/copy-task.ts: the same synthetic copy task with PyTorch's stock
nn.Transformer (pre-norm, learned absolute positions, separate output layer), to tell "a small
seq2seq transformer from scratch is slow at this lookup" from "this project's T5 training path is".
Diagnostic only, not part of the product or the tests. Needs PyTorch (Debian: apt-get install
python3-torch, then run with /usr/bin/python3):

  /usr/bin/python3 scripts/reference/copy_task_torch.py [steps=5000] [lr=1e-3] [passage=32]

Task (as copy-task.ts with key tokens 1): passage = `passage` random tokens of 197, question = one
passage token, answer = the token after it; encoder row `<q> a <q> passage </s>`, target
`answer </s>`; loss = mean CE over the two target tokens (chance ≈ 2.65). Batch 32, d_model 64,
4 heads, 2 + 2 layers, FFN 128, Adam, seed 1.
"""
import math
import sys

import torch
from torch import nn

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
lr = float(sys.argv[2]) if len(sys.argv) > 2 else 1e-3
P = int(sys.argv[3]) if len(sys.argv) > 3 else 32
V, B, D = 200, 32, 64
torch.manual_seed(1)
torch.set_num_threads(1)


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.enc_pos = nn.Embedding(P + 8, D)
        self.dec_pos = nn.Embedding(8, D)
        self.core = nn.Transformer(D, 4, 2, 2, 128, dropout=0.0, batch_first=True, norm_first=True)
        self.out = nn.Linear(D, V)

    def forward(self, src, tgt_in):
        s = self.embed(src) * math.sqrt(D) / 8 + self.enc_pos(torch.arange(src.shape[1]))
        t = self.embed(tgt_in) * math.sqrt(D) / 8 + self.dec_pos(torch.arange(tgt_in.shape[1]))
        causal = self.core.generate_square_subsequent_mask(tgt_in.shape[1])
        return self.out(self.core(s, t, tgt_mask=causal))


def batch():
    passage = torch.randint(3, V, (B, P))
    at = torch.randint(0, P - 1, (B,))
    key = passage[torch.arange(B), at]
    answer = passage[torch.arange(B), at + 1]
    src = torch.cat([torch.full((B, 1), 2), key[:, None], torch.full((B, 1), 2), passage, torch.ones(B, 1, dtype=torch.long)], 1)
    target = torch.stack([answer, torch.ones(B, dtype=torch.long)], 1)
    tgt_in = torch.cat([torch.zeros(B, 1, dtype=torch.long), target[:, :1]], 1)
    return src, tgt_in, target


model = Seq2Seq()
opt = torch.optim.Adam(model.parameters(), lr=lr)
for step in range(1, steps + 1):
    src, tgt_in, target = batch()
    logits = model(src, tgt_in)
    loss = nn.functional.cross_entropy(logits.reshape(-1, V), target.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 250 == 0:
        print(f"step {step} loss {loss.item():.3f}", flush=True)
