#!/usr/bin/python3
"""Write the LoRA adapters in PEFT's file layout that tests/cli/test_lora.sh reads.

Run from anywhere with Debian's python3-torch and python3-numpy:
    /usr/bin/python3 tests/data/lora/make_fixtures.py
PEFT is not in Debian, so the layout is written by hand, as PEFT's
save_pretrained writes it (adapter_config.json + adapter_model.safetensors,
or adapter_model.bin from torch.save of the state dict). It rewrites, next
to itself:
  base/        a tiny llama-shaped F32 model (2 layers, q_proj with a bias)
  plain/       r 4, alpha 8, rank_pattern {down_proj: 2}, alpha_pattern
               {v_proj: 16}, an embedding LoRA on embed_tokens, lora_bias on
               q_proj, modules_to_save [lm_head]; adapter_model.safetensors
  rslora_bin/  use_rslora, r 4, alpha 4, q_proj and up_proj; adapter_model.bin
               (torch.save) and the same tensors as adapter_model.safetensors
               in rslora_st/, so the two readers can be compared
  gpt2base/    a GPT-2-shaped model: Conv1D weights stored [in, out]
  conv1d/      fan_in_fan_out true, on c_attn and c_fc of gpt2base
Values come from a fixed NumPy seed, so the files are the same every run.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "ref"))
import safetensors_io as sio  # noqa: E402

P = "base_model.model."
H, V, FF = 8, 32, 16


def rnd(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def base_model(rng):
    t = {"model.embed_tokens.weight": rnd(rng, V, H), "model.norm.weight": rnd(rng, H),
         "lm_head.weight": rnd(rng, V, H)}
    for i in range(2):
        p = "model.layers.%d." % i
        t[p + "input_layernorm.weight"] = rnd(rng, H)
        t[p + "self_attn.q_proj.weight"] = rnd(rng, H, H)
        t[p + "self_attn.q_proj.bias"] = rnd(rng, H)
        t[p + "self_attn.v_proj.weight"] = rnd(rng, H, H)
        t[p + "mlp.up_proj.weight"] = rnd(rng, FF, H)
        t[p + "mlp.down_proj.weight"] = rnd(rng, H, FF)
    return t


def gpt2_model(rng):
    t = {"transformer.wte.weight": rnd(rng, V, H)}
    for i in range(2):
        p = "transformer.h.%d." % i
        t[p + "attn.c_attn.weight"] = rnd(rng, H, 3 * H)     # Conv1D: [in, out]
        t[p + "mlp.c_fc.weight"] = rnd(rng, H, FF)
        t[p + "ln_1.weight"] = rnd(rng, H)
    return t


def write_base(folder, tensors, arch):
    sio.save_model(folder, tensors, "F32")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"architectures": [arch], "hidden_size": H, "vocab_size": V,
                   "num_hidden_layers": 2, "torch_dtype": "float32"}, f, indent=2)


def config(**kw):
    c = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
         "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": False,
         "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
         "inference_mode": True, "base_model_name_or_path": "base"}
    c.update(kw)
    return c


def factors(rng, t, module, rows, cols, r, emb=False, transposed=False):
    """lora A and B of module for a base weight [rows, cols]."""
    fan_in, fan_out = (rows, cols) if transposed else (cols, rows)
    a, b = rnd(rng, r, fan_in, scale=0.5), rnd(rng, fan_out, r, scale=0.5)
    if emb:
        t[P + module + ".lora_embedding_A"], t[P + module + ".lora_embedding_B"] = a, b
    else:
        t[P + module + ".lora_A.weight"], t[P + module + ".lora_B.weight"] = a, b


def write_adapter(folder, cfg, tensors, fmt="safetensors"):
    os.makedirs(folder, exist_ok=True)
    for old in ("adapter_model.safetensors", "adapter_model.bin"):
        if os.path.exists(os.path.join(folder, old)):
            os.remove(os.path.join(folder, old))
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if fmt == "bin":
        sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
        torch.save(sd, os.path.join(folder, "adapter_model.bin"))
    else:
        sio.save_file(os.path.join(folder, "adapter_model.safetensors"), tensors, "F32")


def main():
    rng = np.random.default_rng(1313)
    base = base_model(rng)
    write_base(os.path.join(HERE, "base"), base, "LlamaForCausalLM")

    t = {}
    for i in range(2):
        p = "model.layers.%d." % i
        factors(rng, t, p + "self_attn.q_proj", H, H, 4)
        t[P + p + "self_attn.q_proj.lora_B.bias"] = rnd(rng, H)
        factors(rng, t, p + "self_attn.v_proj", H, H, 4)
        factors(rng, t, p + "mlp.up_proj", FF, H, 4)
        factors(rng, t, p + "mlp.down_proj", H, FF, 2)
    factors(rng, t, "model.embed_tokens", V, H, 4, emb=True, transposed=True)
    t[P + "lm_head.weight"] = rnd(rng, V, H)
    write_adapter(os.path.join(HERE, "plain"),
                  config(rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 16},
                         lora_bias=True, modules_to_save=["lm_head"],
                         target_modules=["q_proj", "v_proj", "up_proj", "down_proj",
                                         "embed_tokens"]), t)

    t = {}
    for i in range(2):
        p = "model.layers.%d." % i
        factors(rng, t, p + "self_attn.q_proj", H, H, 4)
        factors(rng, t, p + "mlp.up_proj", FF, H, 4)
    cfg = config(r=4, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "up_proj"])
    write_adapter(os.path.join(HERE, "rslora_bin"), cfg, t, "bin")
    write_adapter(os.path.join(HERE, "rslora_st"), cfg, t)

    write_base(os.path.join(HERE, "gpt2base"), gpt2_model(rng), "GPT2LMHeadModel")
    t = {}
    for i in range(2):
        p = "transformer.h.%d." % i
        factors(rng, t, p + "attn.c_attn", H, 3 * H, 4, transposed=True)
        factors(rng, t, p + "mlp.c_fc", H, FF, 4, transposed=True)
    write_adapter(os.path.join(HERE, "conv1d"),
                  config(fan_in_fan_out=True, target_modules=["c_attn", "c_fc"],
                         base_model_name_or_path="gpt2base"), t)


if __name__ == "__main__":
    main()
