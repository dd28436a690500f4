"""In-repo fakes of the GitLab and Gitea/Forgejo HTTP APIs (see ``README.md`` in this folder).

Each fake is a real HTTP server on ``127.0.0.1`` running in its own thread, so blocking clients
(python-gitlab), async clients in the test's loop (httpx, gidgetlab, gitea-async-sdk) and CLI
subprocesses can all talk to it::

    from tests.fakes import DEVELOPER, FakeGitLab, GitLabToken

    with FakeGitLab(tokens={"tok": GitLabToken("bot", role=DEVELOPER)}) as gl:
        gl.add_project("group/app")
        ...  # point the client at gl.url
"""

from .gitea import Account as GiteaAccount
from .gitea import FakeGitea, GiteaFileView, GiteaPackageView
from .gitea import TokenInfo as GiteaToken
from .gitlab import (
    DEVELOPER,
    GUEST,
    MAINTAINER,
    NO_ACCESS,
    OWNER,
    REPORTER,
    FakeGitLab,
    GitLabUser,
    PackageFileView,
    PackageView,
)
from .gitlab import TokenInfo as GitLabToken
from .server import FakeServer, FaultRule, HTTPFault, RecordedRequest

__all__ = [
    "DEVELOPER",
    "GUEST",
    "MAINTAINER",
    "NO_ACCESS",
    "OWNER",
    "REPORTER",
    "FakeGitLab",
    "FakeGitea",
    "FakeServer",
    "FaultRule",
    "GitLabToken",
    "GitLabUser",
    "GiteaAccount",
    "GiteaFileView",
    "GiteaPackageView",
    "GiteaToken",
    "HTTPFault",
    "PackageFileView",
    "PackageView",
    "RecordedRequest",
]
