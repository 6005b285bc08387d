"""Images as ECR lists them: one row per manifest, with its tags, a page per query."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Connection, and_, exists, select, update

from cargohold.storage.database import Database
from cargohold.storage.metadata import RepositoryNotFound
from cargohold.storage.schema import manifest_references, manifests, repositories, tags


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: int
    digest: str
    media_type: str
    artifact_type: str | None
    config_media_type: str | None
    image_size: int
    pushed_at: int
    last_pulled_at: int | None
    subject_digest: str | None
    tags: tuple[str, ...]


_IMAGE_COLUMNS = (manifests.c.id, manifests.c.digest, manifests.c.media_type,
                  manifests.c.artifact_type, manifests.c.config_media_type,
                  manifests.c.image_size, manifests.c.pushed_at, manifests.c.last_pulled_at,
                  manifests.c.subject_digest)
_TAGGED = exists().where(tags.c.manifest_id == manifests.c.id)


class ImageStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @staticmethod
    def _repository_id(conn: Connection, name: str) -> int:
        repo_id = conn.execute(select(repositories.c.id).where(repositories.c.name == name)
                               ).scalar_one_or_none()
        if repo_id is None:
            raise RepositoryNotFound(name)
        return repo_id

    def page(self, repository: str, *, after_id: int, limit: int, tag_status: str = "ANY",
             artifact_type: str | None = None) -> list[ImageRecord]:
        """Up to `limit` images after `after_id` with their tags, in one statement."""
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            query = (select(*_IMAGE_COLUMNS)
                     .where(manifests.c.repository_id == repo_id, manifests.c.id > after_id)
                     .order_by(manifests.c.id).limit(limit))
            if tag_status == "TAGGED":
                query = query.where(_TAGGED)
            elif tag_status == "UNTAGGED":
                query = query.where(~_TAGGED)
            if artifact_type is not None:
                query = query.where(manifests.c.artifact_type == artifact_type)
            page = query.cte("page")
            rows = conn.execute(
                select(page, tags.c.name.label("tag"))
                .outerjoin(tags, tags.c.manifest_id == page.c.id)
                .order_by(page.c.id, tags.c.name)).all()
        return _group(rows)

    def find(self, repository: str, *, digest: str | None = None,
             tag: str | None = None) -> ImageRecord | None:
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            query = select(*_IMAGE_COLUMNS).where(manifests.c.repository_id == repo_id)
            if digest is not None:
                query = query.where(manifests.c.digest == digest)
            if tag is not None:
                query = query.where(exists().where(and_(
                    tags.c.manifest_id == manifests.c.id, tags.c.name == tag)))
            found = query.cte("found")
            rows = conn.execute(
                select(found, tags.c.name.label("tag"))
                .outerjoin(tags, tags.c.manifest_id == found.c.id)
                .order_by(tags.c.name)).all()
        images = _group(rows)
        return images[0] if images else None

    def is_referenced(self, repository: str, digest: str) -> bool:
        """Whether an index in the repository lists this manifest."""
        with self.database.read() as conn:
            repo_id = self._repository_id(conn, repository)
            return conn.execute(
                select(manifest_references.c.manifest_id)
                .join(manifests, manifests.c.id == manifest_references.c.manifest_id)
                .where(manifests.c.repository_id == repo_id,
                       manifest_references.c.kind == "manifest",
                       manifest_references.c.digest == digest).limit(1)).first() is not None

    def record_pulls(self, pulls: list[tuple[str, str, int]]) -> None:
        """Set lastRecordedPullTime for (repository, digest, time) triples."""
        with self.database.write() as conn:
            for repository, digest, at in pulls:
                conn.execute(update(manifests).where(
                    manifests.c.digest == digest,
                    manifests.c.repository_id == select(repositories.c.id).where(
                        repositories.c.name == repository).scalar_subquery(),
                ).values(last_pulled_at=at))


def _group(rows: list) -> list[ImageRecord]:  # type: ignore[type-arg]
    images: list[ImageRecord] = []
    pending: dict[int, list[str]] = {}
    for row in rows:
        if row.id not in pending:
            pending[row.id] = []
            images.append(ImageRecord(row.id, row.digest, row.media_type, row.artifact_type,
                                      row.config_media_type, row.image_size, row.pushed_at,
                                      row.last_pulled_at, row.subject_digest, ()))
        if row.tag is not None:
            pending[row.id].append(row.tag)
    return [replace(image, tags=tuple(pending[image.id])) for image in images]
