"""The study's architectures as Keras 2 (tf_keras) builders, shared by training, QAT and export.

Every builder takes raw 0–255 grey pixels (48×48×1 by default), normalises inside the graph,
and ends in ``logits`` (Dense) → ``predictions`` (float32 softmax over the 7 classes). Layer
names are fixed, so quantisation annotations and export exclusions can refer to them.

    from edge_fer.models import create_model
    model = create_model("cnn", input_shape=(48, 48, 1), width=0.5, dropout=0.4)
"""

from __future__ import annotations

from .._tf import keras as _keras
from ..errors import ConfigError
from ..labels import IMAGE_SIZE, NUM_CLASSES
from .options import HARD_SWISH_MODES
from .registry import register_model

DEFAULT_INPUT = (IMAGE_SIZE, IMAGE_SIZE, 1)


def _check(name: str, input_shape, classes: int, dropout: float, width: float, weights, min_side: int = 16):
    if len(tuple(input_shape)) != 3:
        raise ConfigError(f"{name}: input_shape must be (height, width, channels), got {input_shape!r}")
    h, w, c = input_shape
    if min(h, w) < min_side:
        raise ConfigError(f"{name}: input {h}x{w} is too small; this architecture needs at least {min_side}x{min_side}")
    if c not in (1, 3):
        raise ConfigError(f"{name}: {c} input channels; expected 1 (grey) or 3")
    if not (isinstance(classes, int) and classes >= 2):
        raise ConfigError(f"{name}: classes must be an integer ≥ 2, got {classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    if not width > 0:
        raise ConfigError(f"{name}: width must be > 0, got {width!r}")
    if weights not in (None, "imagenet") and not (isinstance(weights, str) and weights.strip()):
        raise ConfigError(f"{name}: weights must be None, 'imagenet' or a weights file's path, got {weights!r}")


def _head(x, classes: int, dropout: float):
    keras = _keras()
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(classes, name="logits")(x)
    # float32 softmax even under a mixed-precision policy.
    return keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)


@register_model("cnn", description="the study's traditional CNN: 4 blocks of 2×(Conv-BN-ReLU) + MaxPool, Dense head",
                aliases=("traditional_cnn", "baseline"))
def build_cnn(
    input_shape=DEFAULT_INPUT,
    classes: int = NUM_CLASSES,
    width: float = 1.0,
    filters: tuple[int, ...] = (32, 64, 128, 256),
    dense_units: int = 256,
    dropout: float = 0.4,
    bn_momentum: float = 0.9,
    weights=None,
):
    _check("cnn", input_shape, classes, dropout, width, weights)
    if weights is not None:
        raise ConfigError("cnn: there are no ImageNet weights for the traditional CNN; use --weights none")
    keras = _keras()
    L = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = L.Rescaling(1.0 / 255.0, name="preprocess")(inputs)
    for i, f in enumerate(filters, start=1):
        f = max(8, int(round(f * width)))
        for j in (1, 2):
            x = L.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{i}_conv{j}")(x)
            x = L.BatchNormalization(momentum=bn_momentum, name=f"block{i}_bn{j}")(x)
            x = L.ReLU(name=f"block{i}_relu{j}")(x)
        x = L.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(max(8, int(round(dense_units * width))), use_bias=False, name="fc1")(x)
    x = L.BatchNormalization(momentum=bn_momentum, name="fc1_bn")(x)
    x = L.ReLU(name="fc1_relu")(x)
    return keras.Model(inputs, _head(x, classes, dropout), name="cnn")


def _imagenet_input(inputs, mean_bgr):
    """Raw 0–255 grey → what keras' ImageNet ResNet50/VGG16 weights expect, inside the graph:
    the grey channel repeated to three, then caffe-style preprocessing (keras'
    ``imagenet_utils.preprocess_input`` mode "caffe": RGB → BGR, minus the ImageNet mean per channel,
    no scaling). The three channels are equal (edge_fer feeds 3-channel models grey repeated too),
    so the RGB → BGR swap changes nothing and only the mean subtraction remains."""
    keras = _keras()
    L = keras.layers
    x = inputs
    if inputs.shape[-1] == 1:
        x = L.Concatenate(name="grey_to_rgb")([inputs, inputs, inputs])
    return L.Normalization(mean=list(mean_bgr), variance=[1.0, 1.0, 1.0], name="preprocess")(x)


def _application(name: str, app_fn, input_shape, classes, dropout, width, weights):
    _check(name, input_shape, classes, dropout, width, weights, min_side=32)
    if width != 1.0:
        raise ConfigError(f"{name}: width is fixed at 1.0 for keras.applications models, got {width!r}")
    keras = _keras()
    L = keras.layers
    from .weights import check_weights_file, expected_file, is_weights_file, load_backbone_weights

    path = check_weights_file(name, weights) if is_weights_file(weights) else None  # before anything is built
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    if weights is not None:  # ImageNet weights, downloaded or from a file
        x = _imagenet_input(inputs, (103.939, 116.779, 123.68))
    else:
        x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    try:
        base = app_fn(include_top=False, weights=None if path else weights, input_tensor=x, pooling="avg")
    except Exception as e:  # download failure offline, or a corrupt cached file
        if weights == "imagenet":
            said = " ".join(str(e).split())
            said = said.split(" -- ", 1)[-1]  # keras' "URL fetch failure on URL: code -- reason": the reason
            raise ConfigError(
                f"{name}: could not download ImageNet weights ({said[:100]}); "
                f"keras fetches them on first use, which needs network access. Offline, pass --weights PATH with "
                f"{expected_file(name)}, or train from scratch with --weights none"
            ) from None
        raise
    if path:
        load_backbone_weights(name, base, path)
    return keras.Model(inputs, _head(base.output, classes, dropout), name=name)


@register_model("resnet50", description="ResNet-50 (keras.applications) with a 7-way head; the study's best model",
                imagenet=True)
def build_resnet50(input_shape=DEFAULT_INPUT, classes: int = NUM_CLASSES, dropout: float = 0.3,
                   width: float = 1.0, weights=None):
    return _application("resnet50", _keras().applications.ResNet50, input_shape, classes, dropout, width, weights)


_VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


@register_model("vgg16", description="VGG-16 (keras.applications) with a 7-way head; -o batch_norm=true for VGG-16-BN",
                imagenet=True)
def build_vgg16(input_shape=DEFAULT_INPUT, classes: int = NUM_CLASSES, dropout: float = 0.3,
                width: float = 1.0, weights=None, batch_norm: bool = False, bn_momentum: float = 0.9):
    """VGG-16. ``batch_norm=False`` (default) is keras.applications' VGG16, the study's model.

    ``batch_norm=True`` is VGG-16-BN (Conv-BN-ReLU, as torchvision's ``vgg16_bn``): the same 13
    convolutions under the same layer names, each followed by BatchNorm. Trained from scratch on
    FER2013 with Adam 1e-3, plain VGG-16 collapses to a constant output (the majority class,
    24.9%, after 2 epochs); VGG-16-BN learns with the same recipe (31.5% after 2 epochs), and
    BatchNorm folds into the convolutions at export.
    """
    if not batch_norm:
        return _application("vgg16", _keras().applications.VGG16, input_shape, classes, dropout, width, weights)
    _check("vgg16", input_shape, classes, dropout, width, weights, min_side=32)
    if weights is not None:
        raise ConfigError("vgg16: ImageNet weights exist for plain VGG-16 only; use -o batch_norm=false or --weights none")
    if width != 1.0:
        raise ConfigError(f"vgg16: width is fixed at 1.0, got {width!r}")
    keras = _keras()
    L = keras.layers
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    for i, (filters, convs) in enumerate(_VGG16_STAGES, start=1):
        for j in range(1, convs + 1):
            x = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv{j}")(x)
            x = L.BatchNormalization(momentum=bn_momentum, name=f"block{i}_bn{j}")(x)
            x = L.ReLU(name=f"block{i}_relu{j}")(x)
        x = L.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, _head(x, classes, dropout), name="vgg16")


# --- MobileNetV3, rebuilt from keras.applications' definition with quantisable activations ---

def _depth(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _activation(kind: str, name: str):
    """A callable applying ReLU or hard-swish under fixed layer names."""
    from .layers import HardSigmoid, HardSwish

    L = _keras().layers
    if kind == "relu":
        return L.ReLU(name=name + "relu")
    if kind == "hswish":
        return HardSwish(name=name + "hswish")
    # "hswish_split": x · hard_sigmoid(x) as two layers. After QAT each has its own int8 range, so the
    # converter emits MUL + a fused conv activation, which XNNPACK runs in int8, instead of an int8
    # HARD_SWISH, which XNNPACK does not support and which splits the graph into many partitions.
    return lambda x: L.Multiply(name=name + "hswish")([x, HardSigmoid(name=name + "hsigmoid")(x)])


def _se_block(inputs, filters: int, se_ratio: float, prefix: str):
    from .layers import HardSigmoid

    L = _keras().layers
    x = L.GlobalAveragePooling2D(keepdims=True, name=prefix + "squeeze_excite/AvgPool")(inputs)
    x = L.Conv2D(_depth(filters * se_ratio), 1, padding="same", name=prefix + "squeeze_excite/Conv")(x)
    x = L.ReLU(name=prefix + "squeeze_excite/Relu")(x)
    x = L.Conv2D(filters, 1, padding="same", name=prefix + "squeeze_excite/Conv_1")(x)
    x = HardSigmoid(name=prefix + "squeeze_excite/HardSigmoid")(x)
    return L.Multiply(name=prefix + "squeeze_excite/Mul")([inputs, x])


def _inverted_res_block(x, expansion, filters, kernel, stride, se_ratio, act, block_id, bn_momentum):
    L = _keras().layers
    shortcut = x
    infilters = x.shape[-1]
    prefix = f"expanded_conv_{block_id}/" if block_id else "expanded_conv/"
    bn = dict(epsilon=1e-3, momentum=bn_momentum)
    if block_id:
        x = L.Conv2D(_depth(infilters * expansion), 1, padding="same", use_bias=False, name=prefix + "expand")(x)
        x = L.BatchNormalization(name=prefix + "expand/BatchNorm", **bn)(x)
        x = _activation(act, prefix + "expand/")(x)
    # 'same' padding for stride 2 too (keras pads explicitly): one op fewer per block in TFLite.
    x = L.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=prefix + "depthwise")(x)
    x = L.BatchNormalization(name=prefix + "depthwise/BatchNorm", **bn)(x)
    x = _activation(act, prefix + "depthwise/")(x)
    if se_ratio:
        x = _se_block(x, _depth(infilters * expansion), se_ratio, prefix)
    x = L.Conv2D(filters, 1, padding="same", use_bias=False, name=prefix + "project")(x)
    x = L.BatchNormalization(name=prefix + "project/BatchNorm", **bn)(x)
    if stride == 1 and infilters == filters:
        x = L.Add(name=prefix + "Add")([shortcut, x])
    return x


# (expansion, filters, kernel or None for the stage kernel, stride, squeeze-excite, activation)
_SMALL = [
    (1, 16, 3, 2, True, "relu"), (72 / 16, 24, 3, 2, False, "relu"), (88 / 24, 24, 3, 1, False, "relu"),
    (4, 40, None, 2, True, "hswish"), (6, 40, None, 1, True, "hswish"), (6, 40, None, 1, True, "hswish"),
    (3, 48, None, 1, True, "hswish"), (3, 48, None, 1, True, "hswish"), (6, 96, None, 2, True, "hswish"),
    (6, 96, None, 1, True, "hswish"), (6, 96, None, 1, True, "hswish"),
]
_LARGE = [
    (1, 16, 3, 1, False, "relu"), (4, 24, 3, 2, False, "relu"), (3, 24, 3, 1, False, "relu"),
    (3, 40, None, 2, True, "relu"), (3, 40, None, 1, True, "relu"), (3, 40, None, 1, True, "relu"),
    (6, 80, 3, 2, False, "hswish"), (2.5, 80, 3, 1, False, "hswish"), (2.3, 80, 3, 1, False, "hswish"),
    (2.3, 80, 3, 1, False, "hswish"), (6, 112, 3, 1, True, "hswish"), (6, 112, 3, 1, True, "hswish"),
    (6, 160, None, 2, True, "hswish"), (6, 160, None, 1, True, "hswish"), (6, 160, None, 1, True, "hswish"),
]


def _mobilenetv3(name, stack, last_point_ch, input_shape, classes, width, dropout, minimalistic, bn_momentum, weights,
                 hard_swish, stem_stride):
    _check(name, input_shape, classes, dropout, width, weights, min_side=32)
    if stem_stride not in (1, 2):
        raise ConfigError(f"{name}: stem_stride must be 1 or 2, got {stem_stride!r}")
    if hard_swish not in HARD_SWISH_MODES:
        raise ConfigError(f"{name}: hard_swish must be one of {', '.join(HARD_SWISH_MODES)}, got {hard_swish!r}")
    if weights is not None:
        raise ConfigError(
            f"{name}: edge_fer rebuilds MobileNetV3 with quantisable hard-swish layers, so keras' ImageNet "
            "weights do not apply; train from scratch with --weights none"
        )
    keras = _keras()
    L = keras.layers
    kernel, se_ratio = (3, None) if minimalistic else (5, 0.25)
    hswish = "hswish" if hard_swish == "fused" else "hswish_split"
    act_top = "relu" if minimalistic else hswish
    bn = dict(epsilon=1e-3, momentum=bn_momentum)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    # stem_stride=1 keeps 48×48 faces at 3×3 instead of 2×2 after the last stage (2.6× the MACs, same weights).
    x = L.Conv2D(16, 3, strides=stem_stride, padding="same", use_bias=False, name="conv")(x)
    x = L.BatchNormalization(name="conv/BatchNorm", **bn)(x)
    x = _activation(act_top, "conv/")(x)
    for block_id, (expansion, filters, k, stride, se, act) in enumerate(stack):
        x = _inverted_res_block(
            x, expansion, _depth(filters * width), k or kernel, stride,
            se_ratio if se else None, "relu" if (minimalistic or act == "relu") else hswish, block_id, bn_momentum,
        )
    x = L.Conv2D(_depth(x.shape[-1] * 6), 1, padding="same", use_bias=False, name="conv_1")(x)
    x = L.BatchNormalization(name="conv_1/BatchNorm", **bn)(x)
    x = _activation(act_top, "conv_1/")(x)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    x = L.Dense(_depth(last_point_ch * width) if width > 1.0 else last_point_ch, name="conv_2")(x)
    x = _activation(act_top, "conv_2/")(x)
    return keras.Model(inputs, _head(x, classes, dropout), name=name)


@register_model("mobilenetv3_small", description="MobileNetV3-Small (the study's MobileNet-V3), quantisable rebuild",
                aliases=("mobilenetv3", "mobilenet_v3", "mobilenet_v3_small", "mobilenetv3small"))
def build_mobilenetv3_small(input_shape=DEFAULT_INPUT, classes: int = NUM_CLASSES, width: float = 1.0,
                            dropout: float = 0.2, minimalistic: bool = False, bn_momentum: float = 0.9, weights=None,
                            hard_swish: str = "split", stem_stride: int = 2):
    return _mobilenetv3("mobilenetv3_small", _SMALL, 1024, input_shape, classes, width, dropout, minimalistic,
                        bn_momentum, weights, hard_swish, stem_stride)


@register_model("mobilenetv3_large", description="MobileNetV3-Large, quantisable rebuild",
                aliases=("mobilenet_v3_large", "mobilenetv3large"))
def build_mobilenetv3_large(input_shape=DEFAULT_INPUT, classes: int = NUM_CLASSES, width: float = 1.0,
                            dropout: float = 0.2, minimalistic: bool = False, bn_momentum: float = 0.9, weights=None,
                            hard_swish: str = "split", stem_stride: int = 2):
    return _mobilenetv3("mobilenetv3_large", _LARGE, 1280, input_shape, classes, width, dropout, minimalistic,
                        bn_momentum, weights, hard_swish, stem_stride)


# --- ferlite: edge_fer's own architecture for 48×48 faces on Raspberry-Pi-class CPUs ---

def _ds_block(x, filters: int, stride: int, prefix: str, bn_momentum: float):
    """Depthwise 3×3 → BN → ReLU → pointwise 1×1 → BN (+ identity) → ReLU: int8-friendly (ReLU only,
    no gating multiplies), few ops, so XNNPACK runs it as one partition."""
    L = _keras().layers
    shortcut = x
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=prefix + "dw")(x)
    x = L.BatchNormalization(momentum=bn_momentum, name=prefix + "dw_bn")(x)
    x = L.ReLU(name=prefix + "dw_relu")(x)
    x = L.Conv2D(filters, 1, use_bias=False, name=prefix + "pw")(x)
    x = L.BatchNormalization(momentum=bn_momentum, name=prefix + "pw_bn")(x)
    if stride == 1 and shortcut.shape[-1] == filters:
        x = L.Add(name=prefix + "add")([shortcut, x])
    return L.ReLU(name=prefix + "relu")(x)


@register_model("ferlite", description="edge_fer's edge-native net: conv stem + depthwise-separable residual "
                "blocks, ReLU only, ~0.25 M params (int8 ≈ 0.3 MB)", aliases=("edge", "edge_native"))
def build_ferlite(input_shape=DEFAULT_INPUT, classes: int = NUM_CLASSES, width: float = 1.0,
                  blocks: tuple[int, ...] = (1, 2, 2), stem: tuple[int, int] = (32, 64), stem_strides: tuple[int, int] = (1, 2),
                  dropout: float = 0.3, bn_momentum: float = 0.9, weights=None):
    _check("ferlite", input_shape, classes, dropout, width, weights, min_side=16)
    if weights is not None:
        raise ConfigError("ferlite: there are no ImageNet weights for edge_fer's own architecture; use --weights none")
    if len(tuple(blocks)) != 3 or any(int(b) < 0 for b in blocks):
        raise ConfigError(f"ferlite: blocks must be three counts ≥ 0 (one per stage), got {blocks!r}")
    keras = _keras()
    L = keras.layers
    c = lambda f: max(8, int(round(f * width / 8)) * 8)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = L.Rescaling(1.0 / 255.0, name="preprocess")(inputs)
    if sorted(stem_strides) != [1, 2]:
        raise ConfigError(f"ferlite: stem_strides must be (1, 2) or (2, 1) (48 → 24), got {stem_strides!r}")
    x = L.Conv2D(c(stem[0]), 3, strides=stem_strides[0], padding="same", use_bias=False, name="stem_conv1")(x)
    x = L.BatchNormalization(momentum=bn_momentum, name="stem_bn1")(x)
    x = L.ReLU(name="stem_relu1")(x)
    x = L.Conv2D(c(stem[1]), 3, strides=stem_strides[1], padding="same", use_bias=False, name="stem_conv2")(x)
    x = L.BatchNormalization(momentum=bn_momentum, name="stem_bn2")(x)
    x = L.ReLU(name="stem_relu2")(x)
    for stage, (filters, n) in enumerate(zip((c(64), c(128), c(256)), blocks), start=1):
        if stage > 1:  # 24 → 12 → 6
            x = _ds_block(x, filters, 2, f"stage{stage}_down_", bn_momentum)
        for i in range(int(n)):
            x = _ds_block(x, filters, 1, f"stage{stage}_block{i + 1}_", bn_momentum)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, _head(x, classes, dropout), name="ferlite")
