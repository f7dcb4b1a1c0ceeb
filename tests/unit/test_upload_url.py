"""UploadUrlFunction: presigned POSTs limited by key, size, type and expiry; bad requests get 400.

moto accepts presigned POSTs without checking their policy or signature, so the limits are shown
three ways: the decoded policy carries each condition; the signature covers the policy (an edited
policy no longer matches it); and the policy, read with S3's documented POST-policy rules, refuses
oversize, wrong-type and out-of-prefix forms. A real multipart POST against moto's server then
shows the returned url and fields land the image under uploads/.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import posixpath
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from image_pipeline.clients import AwsClients
from image_pipeline.config import DEFAULT_MAX_SOURCE_BYTES, ConfigError, UploadUrlSettings
from image_pipeline.imaging import SUPPORTED_FORMATS
from image_pipeline.uploads import (
    ACCEPTED_CONTENT_TYPES,
    UploadRequest,
    UploadRequestError,
    UploadSigner,
    caller_scope,
    decode_policy,
)
from pipeline_cli.twin.runtime import load_handler
from pipeline_cli.twin.server import embedded_moto
from pipeline_cli.twin.template import resource
from tests.conftest import lambda_context, load_event

BUCKET = "pipeline-ingest-test"
SAMPLE_CALLER = (
    "arn:aws:sts::123456789012:assumed-role/photo-service-role/photo-service"  # events/upload-url-request.json
)
FOLDER = f"uploads/{caller_scope(SAMPLE_CALLER)}/"
MAX_BYTES = 5_000_000
EXPIRY_SECONDS = 300
SETTINGS = UploadUrlSettings(
    ingest_bucket=BUCKET, upload_prefix="uploads/", max_upload_bytes=MAX_BYTES, url_expiry_seconds=EXPIRY_SECONDS
)
ENV = {
    "INGEST_BUCKET": BUCKET,
    "UPLOAD_PREFIX": "uploads/",
    "MAX_UPLOAD_BYTES": str(MAX_BYTES),
    "UPLOAD_URL_EXPIRY_SECONDS": str(EXPIRY_SECONDS),
    "POWERTOOLS_TRACE_DISABLED": "true",
}

Invoke = Callable[[Any], dict[str, Any]]


def load_upload_app(clients: AwsClients) -> ModuleType:
    handler = load_handler("functions/upload_url", "app.lambda_handler", ENV)
    module = sys.modules[handler.__module__]
    module.clients = clients  # type: ignore[attr-defined]
    return module


def request_event(body: Any) -> dict[str, Any]:
    """The sample HTTP API event with another body (a dict is sent as JSON, a str as is)."""
    event = load_event("upload-url-request.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def invoker(module: ModuleType) -> Invoke:
    def invoke(body: Any) -> dict[str, Any]:
        event = body if isinstance(body, dict) and "requestContext" in body else request_event(body)
        response: dict[str, Any] = module.lambda_handler(event, lambda_context("UploadUrlFunction"))
        response["json"] = json.loads(response["body"])
        return response

    return invoke


@pytest.fixture
def invoke(aws: AwsClients) -> Invoke:
    aws.s3.create_bucket(Bucket=BUCKET)
    return invoker(load_upload_app(aws))


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


# ---------------------------------------------------------------- the POST policy, as S3 reads it


def policy_violations(policy: Mapping[str, Any], form: Mapping[str, str], file_size: int, now: datetime) -> list[str]:
    """What S3 would refuse a POST for, by its documented POST-policy rules (moto checks none).

    Every form field except `policy`, `x-amz-signature` and `file` must be matched by a condition;
    each condition must hold: exact match, "starts-with", or "content-length-range" on the file.
    """
    problems = []
    if datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")) <= now:
        problems.append("policy expired")
    values = {name.lower(): value for name, value in form.items()}
    values["bucket"] = BUCKET  # the bucket comes from the URL, not a field
    covered = set()
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, expected),) = condition.items()
            covered.add(name.lower())
            if values.get(name.lower()) != expected:
                problems.append(f"{name} must be {expected!r}")
        elif condition[0] == "content-length-range":
            if not condition[1] <= file_size <= condition[2]:
                problems.append(f"file size {file_size} outside {condition[1]}..{condition[2]}")
        else:
            operator, field, prefix = condition
            assert operator == "starts-with", condition
            covered.add(field.lstrip("$").lower())
            if not values.get(field.lstrip("$").lower(), "").startswith(prefix):
                problems.append(f"{field} must start with {prefix!r}")
    uncovered = set(values) - covered - {"policy", "x-amz-signature", "bucket"}
    problems.extend(f"field {name} is not allowed by the policy" for name in sorted(uncovered))
    return problems


def sigv4_signature(secret_key: str, policy_b64: str, credential: str) -> str:
    """The SigV4 signature S3 expects on a POST policy (signing key from the credential scope)."""
    _, date, region, service, terminal = credential.split("/")
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, terminal):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- happy path


def test_sample_event_returns_a_post_limited_to_its_key_size_type_and_expiry(invoke: Invoke) -> None:
    before = datetime.now(UTC)
    response = invoke(load_event("upload-url-request.json"))

    assert response["statusCode"] == 200
    upload = response["json"]
    assert upload["key"] == f"{FOLDER}holiday/cat.jpg"
    assert upload["method"] == "POST"
    assert upload["max_bytes"] == 2480123  # the size the caller declared, below the limit
    assert upload["fields"]["key"] == f"{FOLDER}holiday/cat.jpg"
    assert upload["fields"]["Content-Type"] == "image/jpeg"
    policy = decode_policy(upload["fields"])
    conditions = policy["conditions"]
    assert {"bucket": BUCKET} in conditions
    assert {"key": f"{FOLDER}holiday/cat.jpg"} in conditions
    assert ["starts-with", "$key", FOLDER] in conditions
    assert ["content-length-range", 1, 2480123] in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert before < expires <= before + timedelta(seconds=EXPIRY_SECONDS + 5)
    assert upload["expires_at"] == policy["expiration"]


def test_without_a_name_the_key_is_random_and_the_limit_is_the_pipelines(invoke: Invoke) -> None:
    first = invoke({"content_type": "image/png"})["json"]
    second = invoke({"content_type": "IMAGE/PNG "})["json"]

    assert re.fullmatch(rf"{FOLDER}[0-9a-f]{{32}}\.png", first["key"])
    assert first["key"] != second["key"]
    assert second["content_type"] == "image/png"
    assert ["content-length-range", 1, MAX_BYTES] in decode_policy(first["fields"])["conditions"]


def test_the_signature_covers_the_policy_so_an_edited_policy_is_refused(invoke: Invoke, aws: AwsClients) -> None:
    fields = invoke({"content_type": "image/jpeg", "size": 1000})["json"]["fields"]
    credentials = aws.session.get_credentials()  # the function's (its role's, on AWS)
    assert credentials is not None
    secret = credentials.secret_key

    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"

    assert sigv4_signature(secret, fields["policy"], fields["x-amz-credential"]) == fields["x-amz-signature"]
    policy = decode_policy(fields)
    policy["conditions"] = [
        ["content-length-range", 1, 10**10] if isinstance(c, list) and c[0] == "content-length-range" else c
        for c in policy["conditions"]
    ]
    edited = base64.b64encode(json.dumps(policy).encode()).decode()
    assert sigv4_signature(secret, edited, fields["x-amz-credential"]) != fields["x-amz-signature"]


def test_by_s3s_rules_the_policy_admits_the_declared_upload_and_nothing_else(invoke: Invoke) -> None:
    fields = invoke({"content_type": "image/jpeg", "size": 2000, "name": "a/cat.jpg"})["json"]["fields"]
    policy, now = decode_policy(fields), datetime.now(UTC)

    assert policy_violations(policy, fields, 2000, now) == []
    assert policy_violations(policy, fields, 1, now) == []
    assert policy_violations(policy, fields, 2001, now) == ["file size 2001 outside 1..2000"]
    assert policy_violations(policy, fields, 0, now) == ["file size 0 outside 1..2000"]
    assert policy_violations(policy, {**fields, "Content-Type": "text/html"}, 10, now) == [
        "Content-Type must be 'image/jpeg'"
    ]
    assert sorted(policy_violations(policy, {**fields, "key": "renditions/x/cat.jpg"}, 10, now)) == [
        f"$key must start with '{FOLDER}'",
        f"key must be '{FOLDER}a/cat.jpg'",
    ]
    assert policy_violations(policy, {**fields, "acl": "public-read"}, 10, now) == [
        "field acl is not allowed by the policy"
    ]
    assert policy_violations(policy, fields, 10, now + timedelta(seconds=EXPIRY_SECONDS + 1)) == ["policy expired"]


def test_a_real_multipart_post_lands_the_image_under_uploads() -> None:
    """Through moto's HTTP server: the url and fields work as a client would use them."""
    image = jpeg_bytes()
    with embedded_moto() as endpoint:
        clients = AwsClients(endpoint_url=endpoint.url)
        clients.s3.create_bucket(Bucket=BUCKET)
        invoke = invoker(load_upload_app(clients))
        upload = invoke({"content_type": "image/jpeg", "size": len(image), "name": "camera/IMG_0001.jpg"})["json"]

        posted = requests.post(
            upload["url"],
            data=upload["fields"],
            files={"file": ("IMG_0001.jpg", image, "image/jpeg")},
            timeout=10,
        )

        assert posted.status_code == 204, posted.text
        listed = clients.s3.list_objects_v2(Bucket=BUCKET)["Contents"]
        assert [obj["Key"] for obj in listed] == [f"{FOLDER}camera/IMG_0001.jpg"]
        stored = clients.s3.get_object(Bucket=BUCKET, Key=f"{FOLDER}camera/IMG_0001.jpg")
        assert stored["Body"].read() == image


# ---------------------------------------------------------------- bad requests


TRAVERSAL_NAMES = [
    "../escape.jpg",
    "a/../../escape.jpg",
    "/etc/escape.jpg",
    "./escape.jpg",
    ".hidden.jpg",
    "a//b.jpg",
    "a/./b.jpg",
    "a\\..\\b.jpg",
    "%2e%2e/escape.jpg",
    "dir/",
    "with space.jpg",
    "caf\u00e9.jpg",
    "line\nbreak.jpg",
    "nul\x00.jpg",
    "x" * 509 + ".jpg",
]


@pytest.mark.parametrize("name", TRAVERSAL_NAMES)
def test_unsafe_names_are_refused(invoke: Invoke, name: str) -> None:
    response = invoke({"content_type": "image/jpeg", "name": name})

    assert response["statusCode"] == 400
    assert "name must be a relative path" in response["json"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"content_type": "text/html"}, "unsupported content type 'text/html'; accepted: image/jpeg, image/png"),
        ({"content_type": "image/svg+xml"}, "unsupported content type 'image/svg+xml'"),
        ({"content_type": "image/jpeg", "size": MAX_BYTES + 1}, f"exceeds the {MAX_BYTES} byte upload limit"),
        ({"content_type": "image/jpeg", "size": 0}, "size must be at least 1 byte"),
        ({"content_type": "image/jpeg", "size": "12"}, "size must be a whole number of bytes"),
        ({"content_type": "image/jpeg", "size": True}, "size must be a whole number of bytes"),
        ({"content_type": "image/jpeg", "size": 1.5}, "size must be a whole number of bytes"),
        ({"content_type": "image/jpeg", "name": "cat.png"}, "name must end in .jpg or .jpeg for content type"),
        ({"content_type": "image/png", "name": "notes"}, "name must end in .png for content type image/png"),
        ({"content_type": "image/png", "name": 7}, "name must be a string"),
        ({"size": 10}, "content_type is required"),
        ({"content_type": ""}, "content_type is required"),
        ({"content_type": "image/png", "contentType": "image/png"}, "unknown fields: contentType"),
        ("not json", "the body must be a JSON object"),
        ('["image/png"]', "the body must be a JSON object"),
        ("", "the body must be a JSON object"),
    ],
)
def test_bad_requests_get_400_with_the_reason_and_nothing_is_signed(
    invoke: Invoke, aws: AwsClients, body: Any, message: str
) -> None:
    response = invoke(body)

    assert response["statusCode"] == 400
    assert message in response["json"]["message"]
    assert "fields" not in response["json"]
    assert aws.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


@given(name=st.text(alphabet=st.sampled_from("ab.-_/\\%~ \u00e9\x00"), max_size=24))
def test_any_granted_name_stays_a_normal_path_under_the_prefix(name: str) -> None:
    signer = UploadSigner(s3=None, settings=SETTINGS)  # type: ignore[arg-type]  # key_for never calls S3
    try:
        key = signer.key_for(UploadRequest(content_type="image/jpeg", name=name + ".jpg"), SAMPLE_CALLER)
    except UploadRequestError:
        return
    assert key == f"{FOLDER}{name}.jpg"
    assert posixpath.normpath(key) == key
    assert all(segment and not segment.startswith(".") for segment in key.split("/"))


# ---------------------------------------------------------------- configuration and template


def test_accepted_types_are_the_formats_the_thumbnailer_decodes() -> None:
    formats = {content_type.removeprefix("image/").upper() for content_type in ACCEPTED_CONTENT_TYPES}
    assert formats - {"HEIC"} == set(SUPPORTED_FORMATS)  # HEIC is HEIF with HEVC pictures


def test_settings_default_to_the_thumbnailers_limit_and_reject_bad_values() -> None:
    assert UploadUrlSettings.from_env({"INGEST_BUCKET": "b"}).max_upload_bytes == DEFAULT_MAX_SOURCE_BYTES
    with pytest.raises(ConfigError) as raised:
        UploadUrlSettings.from_env({"UPLOAD_PREFIX": "uploads", "UPLOAD_URL_EXPIRY_SECONDS": "86400"})
    message = str(raised.value)
    assert "INGEST_BUCKET is required" in message
    assert "UPLOAD_PREFIX='uploads': must end with '/'" in message
    assert "UPLOAD_URL_EXPIRY_SECONDS='86400'" in message


def test_template_ties_both_size_limits_to_one_parameter_and_grants_only_put_under_uploads() -> None:
    function = resource("UploadUrlFunction")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["MAX_UPLOAD_BYTES"] == {"Ref": "MaxUploadBytes"}
    assert resource("ThumbnailFunction")["Properties"]["Environment"]["Variables"]["MAX_SOURCE_BYTES"] == {
        "Ref": "MaxUploadBytes"
    }
    assert variables["UPLOAD_PREFIX"] == "uploads/"
    (policy,) = function["Properties"]["Policies"]
    assert policy["Statement"] == [
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": {"Fn::Sub": "${IngestBucket.Arn}/uploads/*"}},
        {  # to refuse a key that exists: the keys under uploads/, not the objects
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": {"Fn::GetAtt": ["IngestBucket", "Arn"]},
            "Condition": {"StringLike": {"s3:prefix": "uploads/*"}},
        },
    ]
    assert function["Condition"] == "HasUploadApi"
    api = resource("UploadApi")["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(api["DefaultRouteSettings"])


# ---------------------------------------------------------------- callers cannot overwrite


def as_caller(body: dict[str, Any], caller: str) -> dict[str, Any]:
    event = request_event(body)
    event["requestContext"]["authorizer"]["iam"]["userArn"] = caller
    return event


def test_each_caller_uploads_into_its_own_folder_and_no_upload_replaces_an_object(
    invoke: Invoke, aws: AwsClients
) -> None:
    """Two callers naming the same file get different keys; a name that exists is refused (409),
    so an upload can neither replace another caller's object nor delete its renditions."""
    request = {"content_type": "image/jpeg", "size": 1000, "name": "avatar.jpg"}
    alice = invoke(as_caller(request, "arn:aws:sts::123456789012:assumed-role/app/alice"))
    mallory = invoke(as_caller(request, "arn:aws:sts::123456789012:assumed-role/app/mallory"))

    assert (alice["statusCode"], mallory["statusCode"]) == (200, 200)
    alices_key, mallorys_key = alice["json"]["key"], mallory["json"]["key"]
    assert alices_key != mallorys_key
    assert alices_key.endswith("/avatar.jpg")
    assert mallorys_key.endswith("/avatar.jpg")
    policy = decode_policy(mallory["json"]["fields"])
    # Mallory's grant cannot be pointed at Alice's key: the policy pins key and folder.
    assert policy_violations(policy, {**mallory["json"]["fields"], "key": alices_key}, 10, datetime.now(UTC)) != []

    aws.s3.put_object(Bucket=BUCKET, Key=alices_key, Body=jpeg_bytes())  # Alice uploaded
    again = invoke(as_caller(request, "arn:aws:sts::123456789012:assumed-role/app/alice"))

    assert again["statusCode"] == 409
    assert "exists already" in again["json"]["message"]
    assert aws.s3.get_object(Bucket=BUCKET, Key=alices_key)["Body"].read() == jpeg_bytes()


def test_a_request_without_a_caller_identity_is_refused(invoke: Invoke, aws: AwsClients) -> None:
    response = invoke(as_caller({"content_type": "image/jpeg"}, ""))
    assert response["statusCode"] == 400
    assert "caller identity" in response["json"]["message"]
