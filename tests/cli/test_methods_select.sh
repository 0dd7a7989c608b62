#!/bin/sh
# test_methods_select.sh - the methods with rank and order statistics
# (della, pcb, sce, arcee-fusion):
# determinism over -j and --max-memory, the command against its recipe
# spelling and the NumPy reference (width-1 rows included), the plan, and
# the errors (exit 1 naming the tensor or the JSON path, exit 2 for usage).
. "$(dirname "$0")/harness.sh"
REF="$ROOT/tests/ref/weld_ref.py"

# same_tensors A B: the two models hold the same tensors, byte for byte
G="--layers 2 --hidden 128 --inter 1536 --vocab 512"
"$MKMODEL" "$T/base" $G >/dev/null
for s in 1 2 3; do "$MKMODEL" "$T/ft$s" $G --seed $s --noise 0.5 >/dev/null; done
B="--base $T/base"
FT="$T/ft1 $T/ft2 $T/ft3"

# same bytes for any -j and --max-memory (16M makes several chunks per tensor)
for cmd in "della $B" "della $B --rescale l1 --density 0.3 --epsilon 0.2" \
	   "della $B --rescale none --combine sum --no-normalize --seed 9" \
	   "della $B --rescale l1 --sign count --weights 1,0.5,2"; do
	same_bytes 16M "$(echo "$cmd" | sed "s|$T/||g")" $cmd $FT
done

# the recipe stored by the command runs again to the same file
"$WELD" della $B --rescale l1 --epsilon 0.1,0.2,0.05 --seed 4 -q -o "$T/r1" $FT 2>"$T/stderr" &&
"$WELD" run --from-output "$T/r1" -q -o "$T/r2" 2>>"$T/stderr"
if [ $? -eq 0 ] && cmp -s "$T/r1/model.safetensors" "$T/r2/model.safetensors"; then
	ok "della: weld run --from-output rebuilds the same file"
else
	not_ok "della: weld run --from-output rebuilds the same file"
fi

# mergekit's della_linear in a recipe is weld della --combine sum
# --no-normalize --rescale l1 with the same values (the same tensors; the
# files differ in the recipe they store)
cat >"$T/dl.json" <<JSON
{"merge_method": "della_linear", "base_model": "$T/base",
 "models": [{"model": "$T/ft1", "parameters": {"weight": 0.5, "density": 0.4, "epsilon": 0.2}},
            {"model": "$T/ft2", "parameters": {"weight": 1.5, "density": 0.6}}],
 "weld": {"seed": 11}}
JSON
"$WELD" run -q "$T/dl.json" -o "$T/d1" 2>"$T/stderr" &&
"$WELD" della $B --combine sum --no-normalize --rescale l1 --seed 11 -q -o "$T/d2" \
	"$T/ft1:weight=0.5,density=0.4,epsilon=0.2" "$T/ft2:weight=1.5,density=0.6" 2>>"$T/stderr"
if [ $? -eq 0 ] && "$WELD" inspect --hash "$T/d1" >"$T/h1" && "$WELD" inspect --hash "$T/d2" >"$T/h2" &&
   cmp -s "$T/h1" "$T/h2"; then
	ok "della_linear recipe = weld della --combine sum --no-normalize --rescale l1"
else
	not_ok "della_linear recipe = weld della --combine sum --no-normalize --rescale l1"
fi

# rows of width 1, one row, 0-D and 3-D tensors: bit for bit the reference
if fixture_py "$T/odd" <<'PY'
rng = np.random.default_rng(3)
shapes = {"col": (37, 1), "vec": (50,), "one": (1, 9), "cube": (3, 4, 6), "scalar": ()}
base = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
for name, m in [("base", base)] + [("m%d" % i, {n: (v + rng.uniform(-0.1, 0.1, v.shape)).astype(np.float32)
                                             for n, v in base.items()}) for i in (1, 2)]:
    stio.save_model(os.path.join(sys.argv[1], name), m)
PY
then
	for opts in "--rescale inverse --density 0.5" "--rescale l1 --density 0.3 --epsilon 0.25" \
		    "--rescale none --combine sum --density 0.6 --seed 5"; do
		O="$T/odd"
		rm -rf "$O/w" "$O/r"
		if "$WELD" della --base "$O/base" $opts -q -o "$O/w" "$O/m1" "$O/m2" 2>"$T/stderr" &&
		   "$PYTHON" "$REF" della --base "$O/base" $opts -o "$O/r" "$O/m1" "$O/m2" 2>>"$T/stderr" &&
		   same_tensors "$O/w" "$O/r" 2>>"$T/stderr"; then
			ok "della $opts: width-1 rows, 0-D and 3-D tensors match the reference bit for bit"
		else
			not_ok "della $opts: width-1 rows, 0-D and 3-D tensors match the reference bit for bit"
		fi
	done
else
	not_ok "odd-shaped fixture"
fi

# the plan: epsilon per model, the passes per tensor (2 with an L1 pass)
"$WELD" plan della $B --rescale l1 --epsilon 0.1 $FT >"$T/plan" 2>&1
if grep -q 'model.norm.weight BF16 \[128\] della passes=2 lambda=1 .*(w=1,d=0.5,eps=0.1)' "$T/plan"; then
	ok "plan della: passes=2 and eps per model"
else
	not_ok "plan della: passes=2 and eps per model"
fi
"$WELD" plan della $B $FT >"$T/plan" 2>&1
if grep -q 'model.norm.weight BF16 \[128\] della lambda=1 ' "$T/plan" &&
   grep -q '^options  normalize=true rescale=inverse combine=ties sign=sum$' "$T/plan"; then
	ok "plan della: one pass with --rescale inverse; the command's defaults"
else
	not_ok "plan della: one pass with --rescale inverse; the command's defaults"
fi
# --rescale l1 keeps the first pass's keep flags for the second: a bit an
# element of the largest tensor (1536 x 128), per model, in the plan's
# memory; --rescale inverse a memo of its p per thread
"$WELD" plan della --json $B --rescale l1 $FT >"$T/l1.json" 2>&1
for j in 1 2; do
	"$WELD" plan della --json -j $j $B $FT >"$T/inv$j.json" 2>&1
	"$WELD" plan della --json -j $j $B --rescale none $FT >"$T/none$j.json" 2>&1
done
if "$PYTHON" -c 'import json, sys
a, b = (json.load(open(f))["memory_bytes"] for f in sys.argv[1:3])
assert a - b == 3 * 1536 * 128 // 8, (a, b)' "$T/l1.json" "$T/none2.json" 2>"$T/stderr"; then
	ok "plan della --rescale l1: the keep bits are in the memory"
else
	not_ok "plan della --rescale l1: the keep bits are in the memory"
fi
if "$PYTHON" -c 'import json, sys
i1, n1, i2, n2 = (json.load(open(f))["memory_bytes"] for f in sys.argv[1:5])
assert i1 > n1 and i2 - n2 == 2 * (i1 - n1), (i1, n1, i2, n2)' "$T/inv1.json" "$T/none1.json" \
	"$T/inv2.json" "$T/none2.json" 2>"$T/stderr"; then
	ok "plan della --rescale inverse: a memo per thread in the memory"
else
	not_ok "plan della --rescale inverse: a memo per thread in the memory"
fi
"$WELD" plan della --json $B --rescale l1 $FT >"$T/plan.json" 2>&1
if "$PYTHON" -c 'import json, sys
p = json.load(open(sys.argv[1]))
t = p["tensors"][0]
assert t["passes"] == [2, 2], t
assert all(s["epsilon"] == 0.15 for s in t["sources"]), t' "$T/plan.json" 2>"$T/stderr"; then
	ok "plan --json della: passes and epsilon"
else
	not_ok "plan --json della: passes and epsilon"
fi

# errors
refuse "della: density and epsilon out of range (plan time)" 1 \
	"density 0.9 and epsilon 0.15 of '$T/ft1' give keep probabilities outside (0, 1)" \
	"$T/e" "$WELD" della $B --density 0.9 -o "$T/e" "$T/ft1"
refuse "della: epsilon list length" 2 "--epsilon has 2 values for 3 models" \
	"$T/e" "$WELD" della $B --epsilon 0.1,0.2 -o "$T/e" $FT
refuse "della: --epsilon 1" 2 "invalid value '1' for '--epsilon'" \
	"$T/e" "$WELD" della $B --epsilon 1 -o "$T/e" $FT
refuse "della: no base" 2 "--base is required" "$T/e" "$WELD" della -o "$T/e" $FT
refuse "della: no model" 2 "no models to merge" "$T/e" "$WELD" della $B -o "$T/e"
refuse "della: --gamma is not its option" 2 "option '--gamma' is not used by 'weld della'" \
	"$T/e" "$WELD" della $B --gamma 0.1 -o "$T/e" $FT
refuse "della: MODEL:gamma=" 2 "'gamma'" "$T/e" "$WELD" della $B -o "$T/e" "$T/ft1:gamma=0.1"

# a row longer than the memory budget holds: refused, naming the tensor
if fixture_py "$T/wide" <<'PY'
for i, name in enumerate(("base", "m1")):
    stio.save_model(os.path.join(sys.argv[1], name),
                    {"wide.weight": np.full((2, 1 << 21), i, np.float32)})
PY
then
	refuse "della: a row wider than --max-memory holds" 1 \
		"della holds whole rows in memory; tensor 'wide.weight' has rows of 2097152 elements" \
		"$T/e" "$WELD" della --base "$T/wide/base" --max-memory 32M -o "$T/e" "$T/wide/m1"
	expect "della: the same row under a budget that holds it" \
		"$WELD" della --base "$T/wide/base" --max-memory 400M -q -o "$T/wide/out" "$T/wide/m1"
else
	not_ok "wide-row fixture"
fi

# recipes: weight is required; parameters della does not take; epsilon's range
mkdir "$T/rc"
recipe_refuse() {
	printf '%s\n' "$2" >"$T/rc/bad.json"
	refuse "recipe: $1" 1 "bad.json: $3" "$T/e" "$WELD" run -q "$T/rc/bad.json" -o "$T/e"
}
recipe_refuse "della without weight" \
	"{\"merge_method\":\"della\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"density\":0.5}}]}" \
	"models[0].parameters.weight: della needs a weight for every model"
recipe_refuse "della_linear with gamma" \
	"{\"merge_method\":\"della_linear\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"weight\":1,\"gamma\":0.1}}]}" \
	"models[0].parameters.gamma: 'gamma' is not a parameter of della_linear"
recipe_refuse "della with epsilon 1.5" \
	"{\"merge_method\":\"della\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"weight\":1,\"epsilon\":1.5}}]}" \
	"models[0].parameters.epsilon: epsilon 1.5 is outside [0, 1]"
recipe_refuse "della_linear with weld.combine" \
	"{\"merge_method\":\"della_linear\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"weight\":1}}],\"weld\":{\"combine\":\"ties\"}}" \
	"weld.combine: 'combine' is not used by della_linear"
recipe_refuse "della with only the base" \
	"{\"merge_method\":\"della\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/base\"}]}" \
	"models: no model to merge besides the base model"

# ---------------------------------------------------------------- pcb

for cmd in "pcb $B" "pcb $B --density 0.3 --clip 0.01" "pcb $B --scope row --density 0.5" \
	   "pcb $B --scope model --density 0.2 --weights 1,2,0.5 --lambda 1.2"; do
	same_bytes 16M "$(echo "$cmd" | sed "s|$T/||g")" $cmd $FT
done

# the reference, bit for bit, on tensors split over several chunks
# (--max-memory 16M), for each scope
for sc in tensor row model; do
	if "$WELD" pcb $B --scope $sc --density 0.25 --clip 0.01 --dtype f32 -q -j 2 --max-memory 16M \
		-o "$T/pw-$sc" "$T/ft1" "$T/ft2" 2>"$T/stderr" &&
	   "$PYTHON" "$REF" pcb $B --scope $sc --density 0.25 --clip 0.01 --dtype f32 \
		-o "$T/pr-$sc" "$T/ft1" "$T/ft2" 2>>"$T/stderr" &&
	   same_tensors "$T/pw-$sc" "$T/pr-$sc"; then
		ok "pcb --scope $sc: the reference's tensors, bit for bit"
	else
		not_ok "pcb --scope $sc: the reference's tensors, bit for bit"
	fi
	rm -rf "$T/pw-$sc" "$T/pr-$sc"
done

# units of 2^20 elements take their threshold from a sample and a window
# of bins around it: the reference, bit for bit, where the sample is fair
# ("wide") and where it sees only every eighth element, whose deltas are
# small ("striped": the window misses and the histogram passes decide)
if fixture_py "$T/pbig" <<'PY'
rng = np.random.default_rng(8)
base = {n: rng.standard_normal((1024, 1024)).astype(np.float32) for n in ("wide", "striped")}
for i in (1, 2):
    m = {"wide": base["wide"] + rng.standard_normal((1024, 1024)).astype(np.float32)}
    d = rng.standard_normal(1 << 20).astype(np.float32)
    d[::8] *= np.float32(1e-3)
    m["striped"] = base["striped"] + d.reshape(1024, 1024)
    stio.save_model(os.path.join(sys.argv[1], "m%d" % i), m)
stio.save_model(os.path.join(sys.argv[1], "base"), base)
PY
then
	P="$T/pbig"
	for sc in tensor model; do
		if "$WELD" pcb --base "$P/base" --scope $sc -q -j 2 --max-memory 64M -o "$P/w-$sc" \
			"$P/m1" "$P/m2" 2>"$T/stderr" &&
		   "$PYTHON" "$REF" pcb --base "$P/base" --scope $sc -o "$P/r-$sc" "$P/m1" "$P/m2" \
			2>>"$T/stderr" &&
		   same_tensors "$P/w-$sc" "$P/r-$sc"; then
			ok "pcb --scope $sc: units of 2^20, fair and striped samples, match the reference"
		else
			not_ok "pcb --scope $sc: units of 2^20, fair and striped samples, match the reference"
		fi
	done
	rm -rf "$P"
else
	not_ok "pcb large-unit fixture"
fi

# degenerate units: a constant delta (max = min of the clipped values), a
# unit of 10 at density 0.1 (top = thr: nothing kept, out = base), width-1
# rows, 0-D
if fixture_py "$T/pdeg" <<'PY'
rng = np.random.default_rng(5)
shapes = {"ten": (10,), "flat": (4, 6), "col": (9, 1), "scalar": (), "cube": (2, 3, 5)}
base = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
for i in (1, 2):
    m = {n: (v + rng.uniform(-0.1, 0.1, v.shape)).astype(np.float32) for n, v in base.items()}
    m["flat"] = (base["flat"] + np.float32(0.125 * i)).astype(np.float32)
    stio.save_model(os.path.join(sys.argv[1], "m%d" % i), m)
stio.save_model(os.path.join(sys.argv[1], "base"), base)
PY
then
	P="$T/pdeg"
	for opts in "--density 0.1" "--density 0.5 --scope row" "--density 0.3 --scope model --clip 0.2"; do
		rm -rf "$P/w" "$P/r"
		if "$WELD" pcb --base "$P/base" $opts -q -o "$P/w" "$P/m1" "$P/m2" 2>"$T/stderr" &&
		   "$PYTHON" "$REF" pcb --base "$P/base" $opts -o "$P/r" "$P/m1" "$P/m2" 2>>"$T/stderr" &&
		   same_tensors "$P/w" "$P/r"; then
			ok "pcb $opts: constant, 10-element, width-1, 0-D and 3-D units match the reference"
		else
			not_ok "pcb $opts: constant, 10-element, width-1, 0-D and 3-D units match the reference"
		fi
	done
	"$WELD" pcb --base "$P/base" --density 0.1 -q -f -o "$P/w" "$P/m1" "$P/m2" 2>"$T/stderr"
	"$WELD" diff "$P/base" "$P/w" >"$T/diff" 2>>"$T/stderr"
	if grep -q '^ten	0	0	' "$T/diff" && grep -q '^scalar	0	0	' "$T/diff"; then
		ok "pcb: a unit of 10 at density 0.1 (top = thr) and a 0-D tensor give the base"
	else
		not_ok "pcb: a unit of 10 at density 0.1 (top = thr) and a 0-D tensor give the base"
	fi
else
	not_ok "pcb degenerate fixture"
fi

# the recipe name is the command
cat >"$T/pcb.json" <<JSON
{"merge_method": "pcb", "base_model": "$T/base",
 "models": [{"model": "$T/ft1", "parameters": {"weight": 0.5, "density": 0.2}},
            {"model": "$T/ft2", "parameters": {"density": 0.4}}],
 "parameters": {"lambda": 1.3}, "weld": {"scope": "model", "clip": 0.001}}
JSON
"$WELD" run -q "$T/pcb.json" -o "$T/q1" 2>"$T/stderr" &&
"$WELD" pcb $B --scope model --clip 0.001 --lambda 1.3 -q -o "$T/q2" \
	"$T/ft1:weight=0.5,density=0.2" "$T/ft2:density=0.4" 2>>"$T/stderr"
if [ $? -eq 0 ] && same_tensors "$T/q1" "$T/q2"; then
	ok "pcb recipe = weld pcb with the same values"
else
	not_ok "pcb recipe = weld pcb with the same values"
fi
expect "pcb: weld run --from-output rebuilds the same tensors" \
	sh -c '"$1" run --from-output "$2" -q -o "$3" && cmp "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/q2" "$T/q3"

# the plan: four passes per tensor (the tails of |delta|, two histograms
# of beta, APPLY), three over a unit of 2^20 elements or more (five if the
# sample's window misses), one with row; one read of the files when the
# unit's inputs are held in memory between the passes
"$WELD" plan pcb $B --max-memory 16M $FT >"$T/plan" 2>&1
if grep -q '^options  scope=tensor clip=0.0001$' "$T/plan" &&
   grep -q 'model.layers.0.mlp.down_proj.weight BF16 \[128, 1536\] pcb passes=4 lambda=1 .*(w=1,d=0.1)' "$T/plan" &&
   grep -q 'model.norm.weight BF16 \[128\] pcb lambda=1 ' "$T/plan"; then
	ok "plan pcb: options, passes=4, density per model, one read of a tensor held in memory"
else
	not_ok "plan pcb: options, passes=4, density per model, one read of a tensor held in memory"
fi
"$WELD" plan pcb $B --scope model --max-memory 32M $FT >"$T/plan" 2>&1
if grep -q 'model.norm.weight BF16 \[128\] pcb passes=3-5 ' "$T/plan"; then
	ok "plan pcb --scope model: a unit of 2^20 elements or more, 3 to 5 passes"
else
	not_ok "plan pcb --scope model: a unit of 2^20 elements or more, 3 to 5 passes"
fi
"$WELD" plan pcb $B --scope model --max-memory 64M $FT >"$T/plan" 2>&1
held=$(cat "$T"/base/*.safetensors "$T"/ft[123]/*.safetensors | wc -c)
if grep -q 'model.norm.weight BF16 \[128\] pcb lambda=1 ' "$T/plan" &&
   sed -n 's/^memory *\([0-9.]*\) MB.*/\1/p' "$T/plan" |
   awk -v h="$held" '{ exit !($1 * 1048576 >= 0.99 * h) }'; then
	ok "plan pcb --scope model: the model's inputs held in memory, read once and counted"
else
	not_ok "plan pcb --scope model: the model's inputs held in memory, read once and counted"
fi
"$WELD" plan pcb $B --scope row $FT >"$T/plan" 2>&1
if grep -q 'model.norm.weight BF16 \[128\] pcb lambda=1 ' "$T/plan"; then
	ok "plan pcb --scope row: one pass"
else
	not_ok "plan pcb --scope row: one pass"
fi

refuse "pcb: --clip 0.5" 2 "invalid value '0.5' for '--clip'" "$T/e" \
	"$WELD" pcb $B --clip 0.5 -o "$T/e" $FT
refuse "pcb: --epsilon is not its option" 2 "option '--epsilon' is not used by 'weld pcb'" "$T/e" \
	"$WELD" pcb $B --epsilon 0.1 -o "$T/e" $FT
refuse "pcb: no base" 2 "--base is required" "$T/e" "$WELD" pcb -o "$T/e" $FT
recipe_refuse "pcb with clip 0.7" \
	"{\"merge_method\":\"pcb\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\"}],\"weld\":{\"clip\":0.7}}" \
	"weld.clip: expected a fraction in [0, 0.5)"
recipe_refuse "pcb with epsilon" \
	"{\"merge_method\":\"pcb\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"epsilon\":0.1}}]}" \
	"models[0].parameters.epsilon: 'epsilon' is not a parameter of pcb"
recipe_refuse "pcb: --scope model with densities that vary by tensor" \
	"{\"merge_method\":\"pcb\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"density\":[0.1,0.5]}}],\"weld\":{\"scope\":\"model\"}}" \
	"weld.scope 'model': density of"

# ---------------------------------------------------------------- sce

for cmd in "sce $B" "sce $B --select-topk 0.3" "sce $B --select-topk 0.05" "sce $B --select-topk 0"; do
	same_bytes 24M "$(echo "$cmd" | sed "s|$T/||g")" $cmd $FT
done

# plateaus: deltas of a few values make many equal variances, so the
# threshold splits them across chunks and slices (a counting pass); the
# reference keeps the lowest positions too
if fixture_py "$T/plat" <<'PY'
rng = np.random.default_rng(9)
vals = np.array([0, 0.125, -0.125, 0.25, -0.25, 0.5], np.float32)
shapes = {"big": (700, 300), "ramp": (4096 * 5 + 7,), "scalar": ()}
base = {n: (rng.integers(-8, 9, s) / 8).astype(np.float32) for n, s in shapes.items()}
stio.save_model(os.path.join(sys.argv[1], "base"), base)
for i in (1, 2, 3):
    m = {n: (v + rng.choice(vals, size=v.shape, p=[0.4, 0.15, 0.15, 0.1, 0.1, 0.1])).astype(np.float32)
         for n, v in base.items()}
    stio.save_model(os.path.join(sys.argv[1], "m%d" % i), m)
PY
then
	P="$T/plat"
	for t in 0.3 0.77; do
		for mm in "-j 3 --max-memory 24M" "-j 1"; do
			rm -rf "$P/w" "$P/r"
			if "$WELD" sce --base "$P/base" --select-topk $t $mm -q -o "$P/w" "$P/m1" "$P/m2" "$P/m3" 2>"$T/stderr" &&
			   "$PYTHON" "$REF" sce --base "$P/base" --select-topk $t -o "$P/r" "$P/m1" "$P/m2" "$P/m3" 2>>"$T/stderr" &&
			   same_tensors "$P/w" "$P/r"; then
				ok "sce --select-topk $t $mm: plateaus of equal variances match the reference"
			else
				not_ok "sce --select-topk $t $mm: plateaus of equal variances match the reference"
			fi
		done
	done
	# the threshold's bin recorded (the default), only the equal ones
	# (300K: at 0.77 for 'big'), none (0: counting passes): the same bytes
	for t in 0.3 0.77; do
		for rm in 0 300K; do
			rm -rf "$P/w" "$P/v"
			if "$WELD" sce --base "$P/base" --select-topk $t -j 3 -q -o "$P/w" "$P/m1" "$P/m2" "$P/m3" 2>"$T/stderr" &&
			   WELD_RECORD_MEMORY=$rm "$WELD" sce --base "$P/base" --select-topk $t -j 3 -q -o "$P/v" \
				"$P/m1" "$P/m2" "$P/m3" 2>>"$T/stderr" &&
			   cmp -s "$P/w/model.safetensors" "$P/v/model.safetensors"; then
				ok "sce --select-topk $t: records of $rm give the same bytes"
			else
				not_ok "sce --select-topk $t: records of $rm give the same bytes"
			fi
		done
	done
else
	not_ok "sce plateau fixture"
fi

# The threshold's range guessed from a sample (one super-tile of 65536
# elements in 16): 'even' has the same deltas everywhere, so the guess
# holds; in 'skew' the sampled first super-tile's deltas are 1024 times
# smaller than the rest's, so the guess misses and HI and LO passes find
# the threshold; in 'sparse' only 999 variances are not 0, all of them in
# the sample, which puts the range above the zeros; at 0.001 the range
# pass then finds k = floor(999 * 0.001) = 0, so nothing is kept. All
# match the reference, for any -j and --max-memory, and the miss reads the
# inputs more times.
if fixture_py "$T/skw" <<'PY'
rng = np.random.default_rng(12)
base = (rng.standard_normal((8, 65536)) * 0.02).astype(np.float32)
for kind in ("even", "skew", "sparse"):
    stio.save_model(os.path.join(sys.argv[1], kind, "base"), {"w": base})
    for i in (1, 2, 3):
        d = rng.standard_normal(base.shape) * 0.002
        if kind == "skew":
            d[0] /= 1024
        if kind == "sparse":        # 999 variances not 0, all in the sample
            d[:] = 0
            d[0, :999] = rng.standard_normal(999) * 0.002
        stio.save_model(os.path.join(sys.argv[1], kind, "m%d" % i),
                        {"w": (base + d).astype(np.float32)})
PY
then
	for kind in even skew sparse; do
		P="$T/skw/$kind"
		M="--base $P/base $P/m1 $P/m2 $P/m3"
		ts="0.3 0.9"
		[ $kind = sparse ] && ts="0.001 0.3"
		for t in $ts; do
			rm -rf "$P/w" "$P/v" "$P/r"
			if "$WELD" sce $M --select-topk $t -j 2 -o "$P/w" 2>"$P/said-$t" &&
			   "$WELD" sce $M --select-topk $t -j 1 --max-memory 16M -q -o "$P/v" 2>"$T/stderr" &&
			   "$PYTHON" "$REF" sce $M --select-topk $t -o "$P/r" 2>>"$T/stderr" &&
			   same_tensors "$P/w" "$P/r" && cmp -s "$P/w/model.safetensors" "$P/v/model.safetensors"; then
				ok "sce --select-topk $t, $kind deltas: the reference, for any -j and --max-memory"
			else
				not_ok "sce --select-topk $t, $kind deltas: the reference, for any -j and --max-memory"
			fi
		done
	done
	# "wrote 'DIR' (1 tensors, 17.83 MB read in ...)": the bytes read
	read_of() { sed -n 's/.*, \([0-9.]*\) MB read in.*/\1/p' "$1"; }
	for t in 0.3 0.9; do
		even=$(read_of "$T/skw/even/said-$t")
		skew=$(read_of "$T/skw/skew/said-$t")
		if [ -n "$even" ] && [ -n "$skew" ] &&
		   awk -v a="$even" -v b="$skew" 'BEGIN { exit !(a < 2.2 * 8.39 && b > a + 2 * 8.38) }'; then
			ok "sce --select-topk $t: a guess that holds reads the inputs 2 times and a sample ($even MB), one that misses twice more ($skew MB)"
		else
			not_ok "sce --select-topk $t: a guess that holds reads the inputs 2 times and a sample ($even MB), one that misses twice more ($skew MB)"
		fi
	done
else
	not_ok "sce sample fixture"
fi

# k = 0 (one model: every variance is 0) gives the base
"$WELD" sce $B --select-topk 0.5 -q -o "$T/s1" "$T/ft1" 2>"$T/stderr" &&
"$WELD" diff "$T/base" "$T/s1" >"$T/diff" 2>>"$T/stderr"
if [ $? -eq 0 ] && [ -s "$T/diff" ] &&
   grep -v '^#' "$T/diff" | awk -F'\t' '$2 != 0 { bad = 1 } END { exit bad }'; then
	ok "sce, one model, k = 0: the base"
else
	not_ok "sce, one model, k = 0: the base"
fi

# the recipe name is the command
cat >"$T/sce.json" <<JSON
{"merge_method": "sce", "base_model": "$T/base",
 "models": [{"model": "$T/ft1"}, {"model": "$T/ft2"}, {"model": "$T/ft3"}],
 "parameters": {"select_topk": 0.2}}
JSON
"$WELD" run -q "$T/sce.json" -o "$T/s2" 2>"$T/stderr" &&
"$WELD" sce $B --select-topk 0.2 -q -o "$T/s3" $FT 2>>"$T/stderr"
if [ $? -eq 0 ] && same_tensors "$T/s2" "$T/s3"; then
	ok "sce recipe = weld sce with the same select_topk"
else
	not_ok "sce recipe = weld sce with the same select_topk"
fi
expect "sce: weld run --from-output rebuilds the same tensors" \
	sh -c '"$1" run --from-output "$2" -q -o "$3" && cmp "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/s3" "$T/s4"

"$WELD" plan sce $B --select-topk 0.3 $FT >"$T/plan" 2>&1
if grep -q '^options  select_topk=0.3$' "$T/plan" &&
   grep -q 'model.norm.weight BF16 \[128\] sce passes=2-7 base=model0 model1 model2 model3$' "$T/plan"; then
	ok "plan sce: select_topk, passes=2-7, no weights"
else
	not_ok "plan sce: select_topk, passes=2-7, no weights"
fi
refuse "sce: --weights is not its option" 2 "option '--weights' is not used by 'weld sce'" "$T/e" \
	"$WELD" sce $B --weights 1 -o "$T/e" $FT
refuse "sce: MODEL:weight=" 2 "'weight' is not used by 'weld sce'" "$T/e" \
	"$WELD" sce $B -o "$T/e" "$T/ft1:weight=2"
refuse "sce: no base" 2 "--base is required" "$T/e" "$WELD" sce -o "$T/e" $FT
recipe_refuse "sce with a weight" \
	"{\"merge_method\":\"sce\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"weight\":1}}]}" \
	"models[0].parameters.weight: 'weight' is not a parameter of sce"
recipe_refuse "sce with select_topk per model" \
	"{\"merge_method\":\"sce\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"select_topk\":0.5}}]}" \
	"models[0].parameters.select_topk: 'select_topk' holds for the whole merge"

# ---------------------------------------------------------------- arcee-fusion

"$WELD" arcee-fusion $B -q -j 1 --max-memory 16M -o "$T/a" "$T/ft1" 2>"$T/stderr" &&
"$WELD" arcee-fusion $B -q -j 3 --max-memory 1G -o "$T/b" "$T/ft1" 2>>"$T/stderr"
if [ $? -eq 0 ] && cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"; then
	ok "arcee-fusion: same file for -j 1/3 and --max-memory 16M/1G"
else
	not_ok "arcee-fusion: same file for -j 1/3 and --max-memory 16M/1G"
fi
rm -rf "$T/b"
if "$PYTHON" "$REF" arcee-fusion $B -o "$T/b" "$T/ft1" 2>"$T/stderr" && same_tensors "$T/a" "$T/b"; then
	ok "arcee-fusion: the reference's tensors bit for bit (tensors over several chunks)"
else
	not_ok "arcee-fusion: the reference's tensors bit for bit (tensors over several chunks)"
fi
rm -rf "$T/a" "$T/b"

# degenerate: most rows unchanged (Q(.25) = Q(.75) = 0: the fence is Q(.5)
# and everything at or above it is taken), width-1 rows (kl = 0), 0-D
# (the model's value)
if fixture_py "$T/af" <<'PY'
rng = np.random.default_rng(11)
shapes = {"mostly": (40, 16), "col": (30, 1), "scalar": (), "cube": (3, 4, 7), "vec": (33,)}
base = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
m = {n: (v + rng.uniform(-0.2, 0.2, v.shape)).astype(np.float32) for n, v in base.items()}
m["mostly"][:35] = base["mostly"][:35]
for name, d in (("base", base), ("m", m)):
    stio.save_model(os.path.join(sys.argv[1], name), d)
PY
then
	A="$T/af"
	if "$WELD" arcee-fusion --base "$A/base" -q -o "$A/w" "$A/m" 2>"$T/stderr" &&
	   "$PYTHON" "$REF" arcee-fusion --base "$A/base" -o "$A/r" "$A/m" 2>>"$T/stderr" &&
	   same_tensors "$A/w" "$A/r"; then
		ok "arcee-fusion: unchanged rows, width-1 rows, 0-D and 3-D match the reference"
	else
		not_ok "arcee-fusion: unchanged rows, width-1 rows, 0-D and 3-D match the reference"
	fi
	# every changed element is taken (a + (b - a), the model's value to
	# an ulp): the 5 changed rows of 16 and the 30 width-1 rows; 0-D: exact
	"$WELD" diff "$A/m" "$A/w" >"$T/diff" 2>>"$T/stderr"
	"$WELD" diff "$A/base" "$A/w" >"$T/diff2" 2>>"$T/stderr"
	if grep -q '^scalar	0	0	' "$T/diff" && grep -q '^col	.*	30$' "$T/diff2" &&
	   grep -q '^mostly	.*	80$' "$T/diff2"; then
		ok "arcee-fusion: with Q(.25) = Q(.75) = 0 and kl = 0 every changed element is taken"
	else
		not_ok "arcee-fusion: with Q(.25) = Q(.75) = 0 and kl = 0 every changed element is taken"
	fi
else
	not_ok "arcee-fusion degenerate fixture"
fi

# the quantiles from the sample's ranges read the inputs 2 + 1/16 times (a
# tensor of 32 super-tiles, changed alike everywhere); by histograms, 3 +
# 1/16 times
if fixture_py "$T/ar" <<'PY'
rng = np.random.default_rng(6)
base = {"w": rng.standard_normal((4096, 512)).astype(np.float32)}
m = {"w": base["w"] + rng.uniform(-0.01, 0.01, (4096, 512)).astype(np.float32)}
for name, d in (("base", base), ("m", m)):
    stio.save_model(os.path.join(sys.argv[1], name), d)
PY
then
	A="--base $T/ar/base $T/ar/m"
	once=$(bytes_read "$T/ar/o" task-arithmetic $A)
	rg=$(bytes_read "$T/ar/o" arcee-fusion $A -j 2)
	hist=$(WELD_RECORD_MEMORY=1K bytes_read "$T/ar/o" arcee-fusion $A -j 2)
	expect "arcee-fusion reads its inputs 2 + 1/16 times ($rg bytes; once: $once)" \
		awk -v b="$rg" -v t="$once" 'BEGIN { exit !(t > 0 && b <= t * (2 + 1 / 16) * 1.001) }'
	expect "arcee-fusion by histograms reads them 3 + 1/16 times ($hist bytes)" \
		awk -v b="$hist" -v t="$once" 'BEGIN { exit !(t > 0 && b >= t * 3 && b <= t * (3 + 1 / 16) * 1.001) }'
	rm -rf "$T/ar"
else
	not_ok "arcee-fusion reads fixture"
fi

# the quantiles' three ways: the sample's ranges (above), the histograms
# when the ranges do not fit the record room, and both when the sample
# misses: a tensor of 4 super-tiles whose first (the sample) changed much
# more than the rest, so that every guessed range lies above its rank
if fixture_py "$T/am" <<'PY'
rng = np.random.default_rng(5)
base = {"w": rng.standard_normal((1024, 256)).astype(np.float32)}
m = {"w": base["w"] + rng.uniform(-1e-3, 1e-3, (1024, 256)).astype(np.float32)}
m["w"][:256] = base["w"][:256] + rng.uniform(-1, 1, (256, 256)).astype(np.float32)
for name, d in (("base", base), ("m", m)):
    stio.save_model(os.path.join(sys.argv[1], name), d)
PY
then
	A="$T/am"
	"$PYTHON" "$REF" arcee-fusion --base "$A/base" -o "$A/r" "$A/m" 2>"$T/stderr"
	if "$WELD" arcee-fusion --base "$A/base" -q -o "$A/w" "$A/m" 2>>"$T/stderr" &&
	   same_tensors "$A/w" "$A/r"; then
		ok "arcee-fusion: a sample that misses its ranges still gives the reference's quantiles"
	else
		not_ok "arcee-fusion: a sample that misses its ranges still gives the reference's quantiles"
	fi
	if WELD_RECORD_MEMORY=1K "$WELD" arcee-fusion --base "$A/base" -q -o "$A/h" "$A/m" \
		2>>"$T/stderr" && same_tensors "$A/h" "$A/r" &&
	   WELD_RECORD_MEMORY=1K "$WELD" arcee-fusion $B -q -o "$T/ah" "$T/ft1" 2>>"$T/stderr" &&
	   "$WELD" arcee-fusion $B -q -o "$T/ar" "$T/ft1" 2>>"$T/stderr" &&
	   cmp -s "$T/ah/model.safetensors" "$T/ar/model.safetensors"; then
		ok "arcee-fusion: ranges too large to record give the same file by histograms"
	else
		not_ok "arcee-fusion: ranges too large to record give the same file by histograms"
	fi
	rm -rf "$T/ah" "$T/ar"
else
	not_ok "arcee-fusion miss fixture"
fi

# mergekit's recipe lists the base among the two models
cat >"$T/af.json" <<JSON
{"merge_method": "arcee_fusion", "base_model": "$T/base",
 "models": [{"model": "$T/base"}, {"model": "$T/ft2"}]}
JSON
"$WELD" run -q "$T/af.json" -o "$T/f1" 2>"$T/stderr" &&
"$WELD" arcee-fusion $B -q -o "$T/f2" "$T/ft2" 2>>"$T/stderr"
if [ $? -eq 0 ] && same_tensors "$T/f1" "$T/f2"; then
	ok "arcee_fusion recipe = weld arcee-fusion"
else
	not_ok "arcee_fusion recipe = weld arcee-fusion"
fi
expect "arcee-fusion: weld run --from-output rebuilds the same tensors" \
	sh -c '"$1" run --from-output "$2" -q -o "$3" && cmp "$2/model.safetensors" "$3/model.safetensors"' \
	sh "$WELD" "$T/f2" "$T/f3"
"$WELD" plan arcee-fusion $B "$T/ft1" >"$T/plan" 2>&1
if grep -q 'model.norm.weight BF16 \[128\] arcee-fusion passes=2-4 base=model0 model1$' "$T/plan"; then
	ok "plan arcee-fusion: passes=2-4"
else
	not_ok "plan arcee-fusion: passes=2-4"
fi
refuse "arcee-fusion: two models" 1 "arcee-fusion takes exactly two models (base and one other), not 3" \
	"$T/e" "$WELD" arcee-fusion $B -o "$T/e" "$T/ft1" "$T/ft2"
refuse "arcee-fusion: --weights is not its option" 2 "option '--weights' is not used by 'weld arcee-fusion'" \
	"$T/e" "$WELD" arcee-fusion $B --weights 1 -o "$T/e" "$T/ft1"
refuse "arcee-fusion: no base" 2 "--base is required" "$T/e" "$WELD" arcee-fusion -o "$T/e" "$T/ft1"
recipe_refuse "arcee_fusion with a parameter" \
	"{\"merge_method\":\"arcee_fusion\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/ft1\",\"parameters\":{\"weight\":1}}]}" \
	"models[0].parameters.weight: 'weight' is not a parameter of arcee_fusion"
recipe_refuse "arcee_fusion with only the base" \
	"{\"merge_method\":\"arcee_fusion\",\"base_model\":\"$T/base\",\"models\":[{\"model\":\"$T/base\"}]}" \
	"models: no model to merge besides the base model"

summary
