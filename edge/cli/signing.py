"""`hemascope keys generate` and `hemascope sign`: ed25519 signatures over a model and its
manifest, made on the workstation and checked by devices whose profile requires them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.cli.options import out

keys_app = typer.Typer(help="Signing keys for models (needs pip install 'hemascope[sign]').",
                       no_args_is_help=True, rich_markup_mode=None)


@keys_app.command("generate")
def generate(path: Annotated[Path, typer.Argument(
        help="Where to write the new private key (PEM, mode 600); keep it off the devices.")]
             ) -> None:
    """Make a signing key and print its public key, the line devices list in
    signatures.trusted_keys.

    Example: hemascope keys generate ~/keys/clinic-models.pem
    """
    from edge.inference.signing import generate_key

    public = generate_key(path)
    out.print(f"private key written to {path} (mode 600)", highlight=False)
    out.print(f"public key: {public}", highlight=False)
    out.print(f"device profile: [signatures] required = true, trusted_keys = [\"{public}\"]",
              markup=False, highlight=False)


def sign(
    model: Annotated[Path, typer.Argument(help="Model file with its manifest beside it.")],
    key: Annotated[Path, typer.Option(help="Private key (PEM) from `hemascope keys generate`.")],
) -> None:
    """Sign a model and its manifest (after export, eval --set-threshold or calibration: any
    later change of either breaks the signature); writes NAME.sig beside them. Copy all three
    to the device.

    Example: hemascope sign edge/models/detector.onnx --key ~/keys/clinic-models.pem
    """
    from edge.inference.manifest import verify_model
    from edge.inference.signing import load_private_key, sign_digest, signature_path

    signature = sign_digest(model, verify_model(model).digest, load_private_key(key))
    out.print(f"signed {model.name} (digest {signature.digest[:12]}) with key "
              f"{signature.public_key}: {signature_path(model)}", highlight=False)
