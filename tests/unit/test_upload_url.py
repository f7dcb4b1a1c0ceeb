"""UploadUrlFunction: presigned PUTs that S3 holds to one new key, size, type and expiry; bad requests get 400.

moto applies If-None-Match on PutObject (412 when the key exists) but checks no presigned URL's
signature: it would store a PUT to another key or with another Content-Type. So the uploads go
through `tests.s3_front_door`, which refuses what S3's SigV4 query authentication refuses (its
check reproduces the signature of AWS's documented example) and hands the rest to moto's server.
Each refusal is paired with the same request, unchanged, succeeding.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
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
    signed_query,
)
from pipeline_cli.twin.runtime import load_handler
from pipeline_cli.twin.server import embedded_moto
from pipeline_cli.twin.template import resource
from tests.conftest import lambda_context, load_event
from tests.s3_front_door import front_door, presigned_refusal

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


ALICE = "arn:aws:sts::123456789012:assumed-role/app/alice"
MALLORY = "arn:aws:sts::123456789012:assumed-role/app/mallory"


def as_caller(body: dict[str, Any], caller: str) -> dict[str, Any]:
    event = request_event(body)
    event["requestContext"]["authorizer"]["iam"]["userArn"] = caller
    return event


@dataclass(frozen=True)
class S3WithSignatureCheck:
    """moto's server behind S3's presigned-URL check, and the upload function pointed at it."""

    clients: AwsClients
    invoke: Invoke

    def stored(self, key: str) -> bytes:
        body: bytes = self.clients.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body

    def keys(self) -> list[str]:
        return [entry["Key"] for entry in self.clients.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.fixture
def s3() -> Iterator[S3WithSignatureCheck]:
    with embedded_moto() as moto_endpoint:
        session = boto3.Session()  # the function's credentials (its role's, on AWS)
        credentials = session.get_credentials()
        assert credentials is not None
        with front_door(moto_endpoint.url, credentials.secret_key) as url:
            clients = AwsClients(session, endpoint_url=url)
            clients.s3.create_bucket(Bucket=BUCKET)
            yield S3WithSignatureCheck(clients, invoker(load_upload_app(clients)))


def put(upload: dict[str, Any], body: bytes, **changes: Any) -> requests.Response:
    """PUT as the response says (method, url, headers), or with `url`/`headers` changed."""
    assert upload["method"] == "PUT"
    return requests.put(
        changes.get("url", upload["url"]), data=body, headers=changes.get("headers", upload["headers"]), timeout=10
    )


def error_code(response: requests.Response) -> str:
    match = re.search(r"<Code>([^<]+)</Code>", response.text)
    return match.group(1) if match else response.text


# ---------------------------------------------------------------- the grant


def test_sample_event_returns_a_put_url_signed_for_its_key_size_type_condition_and_expiry(invoke: Invoke) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    response = invoke(load_event("upload-url-request.json"))

    assert response["statusCode"] == 200
    upload = response["json"]
    assert upload["method"] == "PUT"
    assert upload["key"] == f"{FOLDER}holiday/cat.jpg"
    assert upload["size"] == 2480123  # the size the caller declared, below the limit
    assert upload["headers"] == {"Content-Length": "2480123", "Content-Type": "image/jpeg", "If-None-Match": "*"}
    assert urlsplit(upload["url"]).path.endswith(f"/{FOLDER}holiday/cat.jpg")
    query = signed_query(upload["url"])
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-SignedHeaders"] == "content-length;content-type;host;if-none-match"
    assert query["X-Amz-Expires"] == str(EXPIRY_SECONDS)
    expires = datetime.fromisoformat(upload["expires_at"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=EXPIRY_SECONDS) <= expires <= before + timedelta(seconds=EXPIRY_SECONDS + 5)


def test_without_a_name_the_key_is_random(invoke: Invoke) -> None:
    first = invoke({"content_type": "image/png", "size": MAX_BYTES})["json"]
    second = invoke({"content_type": "IMAGE/PNG ", "size": 10})["json"]

    assert re.fullmatch(rf"{FOLDER}[0-9a-f]{{32}}\.png", first["key"])
    assert first["key"] != second["key"]
    assert second["content_type"] == "image/png"
    assert second["headers"]["Content-Type"] == "image/png"


def test_a_presigner_that_would_leave_the_headers_unsigned_gets_no_grant(aws: AwsClients) -> None:
    """SigV2 presigned URLs sign no headers: the caller could drop If-None-Match. Refused outright."""
    aws.s3.create_bucket(Bucket=BUCKET)
    legacy = aws.session.client("s3", config=Config(signature_version="s3"))

    with pytest.raises(RuntimeError, match="does not sign Content-Length, Content-Type, If-None-Match"):
        UploadSigner(legacy, SETTINGS).presign(UploadRequest("image/jpeg", 10), SAMPLE_CALLER)


# ---------------------------------------------------------------- S3's signature check, as the tests apply it


def test_the_signature_check_computes_the_signature_of_awss_documented_example() -> None:
    """The presigned GET in S3's SigV4 documentation ("Authenticating Requests: Using Query
    Parameters"): its published signature, recomputed; a wrong secret or a changed path fails."""
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
        "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
    host = {"Host": "examplebucket.s3.amazonaws.com"}
    now = datetime(2013, 5, 24, 12, tzinfo=UTC)

    def check(path: str, secret_key: str, now: datetime) -> str | None:
        return presigned_refusal("GET", path, query, host, secret_key=secret_key, now=now)

    assert check("/test.txt", secret, now) is None
    assert check("/test.txt", secret[:-1] + "x", now) == (
        "SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided"
    )
    assert (check("/other.txt", secret, now) or "").startswith("SignatureDoesNotMatch")
    assert check("/test.txt", secret, now + timedelta(days=1)) == "AccessDenied: Request has expired"


def test_a_grant_expires_after_the_configured_seconds(invoke: Invoke, aws: AwsClients) -> None:
    upload = invoke({"content_type": "image/jpeg", "size": 10})["json"]
    url = urlsplit(upload["url"])
    credentials = aws.session.get_credentials()
    assert credentials is not None
    request = ("PUT", url.path, url.query, {"Host": url.netloc, **upload["headers"]})
    issued = datetime.strptime(signed_query(upload["url"])["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    def check(now: datetime) -> str | None:
        return presigned_refusal(*request, secret_key=credentials.secret_key, now=now)

    assert check(issued + timedelta(seconds=EXPIRY_SECONDS)) is None
    assert check(issued + timedelta(seconds=EXPIRY_SECONDS + 1)) == "AccessDenied: Request has expired"


# ---------------------------------------------------------------- S3 refuses overwrites and strays


def test_the_granted_put_stores_the_image_and_s3_refuses_a_second_put_of_the_same_url(
    s3: S3WithSignatureCheck,
) -> None:
    image = jpeg_bytes()
    upload = s3.invoke({"content_type": "image/jpeg", "size": len(image), "name": "camera/IMG_0001.jpg"})["json"]

    first = put(upload, image)
    replay = put(upload, bytes(reversed(image)))  # same grant, same length, other bytes

    assert first.status_code == 200, first.text
    assert (replay.status_code, error_code(replay)) == (412, "PreconditionFailed")
    assert s3.keys() == [f"{FOLDER}camera/IMG_0001.jpg"]
    assert s3.stored(upload["key"]) == image
    # Control: the same PUT presigned without If-None-Match would have replaced the image; the
    # refusal above is the signed condition's, not the test setup's.
    unconditional = s3.clients.s3_presigner.generate_presigned_url(
        "put_object",
        Params={"Bucket": BUCKET, "Key": upload["key"], "ContentLength": len(image), "ContentType": "image/jpeg"},
        ExpiresIn=60,
    )
    headers = {"Content-Type": "image/jpeg"}
    assert put(upload, bytes(reversed(image)), url=unconditional, headers=headers).status_code == 200
    assert s3.stored(upload["key"]) == bytes(reversed(image))


def test_two_grants_for_one_new_key_race_and_s3_keeps_the_first_upload(s3: S3WithSignatureCheck) -> None:
    """Both grants pass the 409 check (nothing is there yet); S3 refuses the later upload."""
    image = jpeg_bytes()
    request = {"content_type": "image/jpeg", "size": len(image), "name": "avatar.jpg"}
    early, late = s3.invoke(request), s3.invoke(request)
    assert (early["statusCode"], late["statusCode"]) == (200, 200)

    won = put(late["json"], image)
    lost = put(early["json"], bytes(reversed(image)))

    assert won.status_code == 200, won.text
    assert (lost.status_code, error_code(lost)) == (412, "PreconditionFailed")
    assert s3.stored(f"{FOLDER}avatar.jpg") == image
    again = s3.invoke(request)  # and from now on the early answer
    assert again["statusCode"] == 409
    assert "exists already" in again["json"]["message"]


def test_s3_refuses_a_put_that_strays_from_the_signed_request(s3: S3WithSignatureCheck) -> None:
    image = jpeg_bytes()
    upload = s3.invoke({"content_type": "image/jpeg", "size": len(image), "name": "a/cat.jpg"})["json"]
    headers, url = upload["headers"], upload["url"]
    without_condition = {name: value for name, value in headers.items() if name != "If-None-Match"}
    strays = {
        "If-None-Match dropped": put(upload, image, headers=without_condition),
        "If-None-Match changed": put(upload, image, headers={**headers, "If-None-Match": '"etag"'}),
        "another Content-Type": put(upload, image, headers={**headers, "Content-Type": "text/html"}),
        "one byte more": put(upload, image + b"\0"),
        "one byte less": put(upload, image[:-1]),
        "another key": put(upload, image, url=url.replace("/a/cat.jpg?", "/a/dog.jpg?")),
        "a key outside uploads/": put(upload, image, url=url.replace(f"/{FOLDER}a/cat.jpg?", "/renditions/x.jpg?")),
        "an unsigned x-amz-acl": put(upload, image, headers={**headers, "x-amz-acl": "public-read"}),
    }

    assert {stray: (r.status_code, error_code(r)) for stray, r in strays.items()} == {
        "If-None-Match dropped": (403, "SignatureDoesNotMatch"),
        "If-None-Match changed": (403, "SignatureDoesNotMatch"),
        "another Content-Type": (403, "SignatureDoesNotMatch"),
        "one byte more": (403, "SignatureDoesNotMatch"),
        "one byte less": (403, "SignatureDoesNotMatch"),
        "another key": (403, "SignatureDoesNotMatch"),
        "a key outside uploads/": (403, "SignatureDoesNotMatch"),
        "an unsigned x-amz-acl": (403, "AccessDenied"),
    }
    assert s3.keys() == []
    assert put(upload, image).status_code == 200  # the request as granted
    assert s3.keys() == [f"{FOLDER}a/cat.jpg"]


def test_each_caller_uploads_into_its_own_folder_and_cannot_address_anothers_key(s3: S3WithSignatureCheck) -> None:
    """Two callers naming the same file get different keys; Mallory's grant pointed at Alice's
    key is refused, and naming Alice's folder only nests it inside Mallory's own."""
    image = jpeg_bytes()
    request = {"content_type": "image/jpeg", "size": len(image), "name": "avatar.jpg"}
    alice = s3.invoke(as_caller(request, ALICE))["json"]
    mallory = s3.invoke(as_caller(request, MALLORY))["json"]
    assert put(alice, image).status_code == 200
    alices_key, mallorys_key = alice["key"], mallory["key"]
    assert alices_key == f"uploads/{caller_scope(ALICE)}/avatar.jpg"
    assert mallorys_key == f"uploads/{caller_scope(MALLORY)}/avatar.jpg"

    hijack = put(mallory, b"x" * len(image), url=mallory["url"].replace(mallorys_key, alices_key))
    nested = s3.invoke(as_caller({**request, "name": f"{caller_scope(ALICE)}/avatar.jpg"}, MALLORY))["json"]

    assert (hijack.status_code, error_code(hijack)) == (403, "SignatureDoesNotMatch")
    assert s3.stored(alices_key) == image
    assert nested["key"] == f"uploads/{caller_scope(MALLORY)}/{caller_scope(ALICE)}/avatar.jpg"
    assert put(mallory, image).status_code == 200  # her own grant, as issued
    assert sorted(s3.keys()) == sorted([alices_key, mallorys_key])


def test_a_key_that_exists_is_refused_with_409_before_anything_is_signed(invoke: Invoke, aws: AwsClients) -> None:
    request = {"content_type": "image/jpeg", "size": 1000, "name": "avatar.jpg"}
    aws.s3.put_object(Bucket=BUCKET, Key=f"{FOLDER}avatar.jpg", Body=jpeg_bytes())

    response = invoke(request)

    assert response["statusCode"] == 409
    assert response["json"]["message"] == (
        f"{FOLDER}avatar.jpg exists already; uploads never replace an object: choose another name"
    )
    assert aws.s3.get_object(Bucket=BUCKET, Key=f"{FOLDER}avatar.jpg")["Body"].read() == jpeg_bytes()


def test_a_request_without_a_caller_identity_is_refused(invoke: Invoke) -> None:
    response = invoke(as_caller({"content_type": "image/jpeg", "size": 10}, ""))
    assert response["statusCode"] == 400
    assert "caller identity" in response["json"]["message"]


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
    response = invoke({"content_type": "image/jpeg", "size": 10, "name": name})

    assert response["statusCode"] == 400
    assert "name must be a relative path" in response["json"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"content_type": "text/html", "size": 10}, "unsupported content type 'text/html'; accepted: image/jpeg"),
        ({"content_type": "image/svg+xml", "size": 10}, "unsupported content type 'image/svg+xml'"),
        ({"content_type": "image/jpeg"}, "size is required: the exact number of bytes you will upload"),
        ({"content_type": "image/jpeg", "size": None}, "size is required"),
        ({"content_type": "image/jpeg", "size": MAX_BYTES + 1}, f"exceeds the {MAX_BYTES} byte upload limit"),
        ({"content_type": "image/jpeg", "size": 0}, "size must be at least 1 byte"),
        ({"content_type": "image/jpeg", "size": "12"}, "size must be a whole number of bytes"),
        ({"content_type": "image/jpeg", "size": True}, "size must be a whole number of bytes"),
        ({"content_type": "image/jpeg", "size": 1.5}, "size must be a whole number of bytes"),
        ({"content_type": "image/jpeg", "size": 10, "name": "cat.png"}, "name must end in .jpg or .jpeg for content"),
        ({"content_type": "image/png", "size": 10, "name": "notes"}, "name must end in .png for content type image/"),
        ({"content_type": "image/png", "size": 10, "name": 7}, "name must be a string"),
        ({"size": 10}, "content_type is required"),
        ({"content_type": "", "size": 10}, "content_type is required"),
        ({"content_type": "image/png", "size": 10, "contentType": "image/png"}, "unknown fields: contentType"),
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
    assert "url" not in response["json"]
    assert aws.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


@given(name=st.text(alphabet=st.sampled_from("ab.-_/\\%~ \u00e9\x00"), max_size=24))
def test_any_granted_name_stays_a_normal_path_under_the_prefix(name: str) -> None:
    signer = UploadSigner(s3=None, settings=SETTINGS)  # type: ignore[arg-type]  # key_for never calls S3
    try:
        key = signer.key_for(UploadRequest(content_type="image/jpeg", size=10, name=name + ".jpg"), SAMPLE_CALLER)
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


def test_template_ties_both_size_limits_to_one_parameter_and_grants_only_conditional_put_under_uploads() -> None:
    function = resource("UploadUrlFunction")
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["MAX_UPLOAD_BYTES"] == {"Ref": "MaxUploadBytes"}
    assert resource("ThumbnailFunction")["Properties"]["Environment"]["Variables"]["MAX_SOURCE_BYTES"] == {
        "Ref": "MaxUploadBytes"
    }
    assert variables["UPLOAD_PREFIX"] == "uploads/"
    (policy,) = function["Properties"]["Policies"]
    assert policy["Statement"] == [
        {  # only with If-None-Match: even a URL signed without it could not replace an object
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": {"Fn::Sub": "${IngestBucket.Arn}/uploads/*"},
            "Condition": {"Null": {"s3:if-none-match": "false"}},
        },
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
