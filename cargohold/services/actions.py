"""ECR action names, and how they group into the registry token scopes pull, push and delete."""

from __future__ import annotations

BATCH_GET_IMAGE = "ecr:BatchGetImage"
GET_DOWNLOAD_URL = "ecr:GetDownloadUrlForLayer"
CHECK_LAYERS = "ecr:BatchCheckLayerAvailability"
LIST_IMAGES = "ecr:ListImages"
DESCRIBE_IMAGES = "ecr:DescribeImages"
PUT_IMAGE = "ecr:PutImage"
INITIATE_UPLOAD = "ecr:InitiateLayerUpload"
UPLOAD_PART = "ecr:UploadLayerPart"
COMPLETE_UPLOAD = "ecr:CompleteLayerUpload"
DELETE_IMAGE = "ecr:BatchDeleteImage"
DESCRIBE_REPOSITORIES = "ecr:DescribeRepositories"

# Each token scope action stands for the ECR actions a client needs for it; a token grants a
# scope only when the policy allows every one of them. (Tag listing and referrers count as
# BatchGetImage: whoever may pull an image may list what there is to pull.)
SCOPE_ACTIONS: dict[str, frozenset[str]] = {
    "pull": frozenset({BATCH_GET_IMAGE, GET_DOWNLOAD_URL, CHECK_LAYERS}),
    "push": frozenset({PUT_IMAGE, INITIATE_UPLOAD, UPLOAD_PART, COMPLETE_UPLOAD}),
    "delete": frozenset({DELETE_IMAGE}),
}
SCOPE_OF: dict[str, str] = {
    action: scope for scope, actions in SCOPE_ACTIONS.items() for action in actions
}
# What a repository listing (the catalog) shows: repositories the caller may pull or describe.
VISIBLE_WITH = (BATCH_GET_IMAGE, DESCRIBE_REPOSITORIES)


def scope_of(action: str) -> str:
    """The token scope that covers an ECR action (management actions need "*")."""
    return SCOPE_OF.get(action, "*")
