#!/usr/bin/env bash
# The CPU results committed under results/cpu/: what ran, exactly. No GPU was available for them, so they use the
# embedded MNIST-5k subset and small inputs instead of the reduced profile (FashionMNIST, 64 px, GPU).
# Run from the repository root: bash results/cpu/run.sh   (about an hour on 2 cores; finished cells are reused)
set -euo pipefail
cd "$(dirname "$0")/../.."
pm() { nb=$1; out=$2; shift 2; mkdir -p "$out"
       papermill "nbs/experiments/$nb.ipynb" "$out/$nb.ipynb" --cwd nbs/experiments --no-progress-bar -p profile cpu -p out_dir "$PWD/$out" "$@"; }

# Table I and Figure 3: ShuffleNet v2 on MNIST-5k (4,000 training images), 32 px, 60 epochs, K = 10
pm table1_markers results/cpu/table1/mnist5k-shufflenet_v2_x1_0 -p dataset mnist5k -p arch shufflenet_v2_x1_0 \
   -p epochs 60 -p size 32 -p n_train None -p n_test None -p K 10 -p run_dir "$PWD/runs/cpu/table1/mnist5k-shufflenet_v2_x1_0" \
   -p keep_marker_weights_only True

# Table I: ResNet-50 on MNIST-5k, 32 px, 40 epochs (2 CPU cores: about 25 s an epoch), K = 10
pm table1_markers results/cpu/table1/mnist5k-resnet50 -p dataset mnist5k -p arch resnet50 \
   -p epochs 40 -p size 32 -p n_train None -p n_test None -p K 10 -p run_dir "$PWD/runs/cpu/table1/mnist5k-resnet50-40ep" \
   -p keep_marker_weights_only True

# 112 px (so that conv5 gives 4x4 maps for Grad-CAM): 1,000 training images, 20 epochs, K = 10
R112="$PWD/runs/cpu/mnist5k-shufflenet_v2_x1_0-112px"
COMMON=(-p dataset mnist5k -p arch shufflenet_v2_x1_0 -p epochs 20 -p size 112 -p n_train 1000 -p n_test 500 -p K 10)
pm table1_markers results/cpu/table1/mnist5k-shufflenet_v2_x1_0-112px "${COMMON[@]}" -p run_dir "$R112"
pm fig4_gradcam results/cpu/gradcam/mnist5k-shufflenet_v2_x1_0-112px "${COMMON[@]}" -p run_dir "$R112" \
   -p early False -p grid_images 6 -p measure_images 200
pm table2_fmcs results/cpu/table2/mnist5k-shufflenet_v2_x1_0-112px "${COMMON[@]}" -p run_dir "$R112" \
   -p run_dir2 "$R112-seed1" -p net_epochs 10 -p batch_size 256
