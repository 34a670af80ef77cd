//! A WebHDFS REST client: the operations the `webhdfs` sink uses, as the Hadoop
//! "WebHDFS REST API" document specifies them.
//!
//! - `CREATE` (`PUT`) and `APPEND` (`POST`) take two steps: the namenode is asked with no
//!   body and answers `307 Temporary Redirect` with a `Location` on a datanode; the
//!   data goes there (`201 Created` for `CREATE`, `200 OK` for `APPEND`). Redirects are
//!   never followed by the HTTP client: the body must not go to the namenode.
//! - `MKDIRS`, `RENAME` (`PUT`), `TRUNCATE` (`POST`) answer `{"boolean": …}`;
//!   `GETFILESTATUS` (`GET`) answers `{"FileStatus": {…}}`.
//! - Errors come as `{"RemoteException": {"exception", "javaClassName", "message"}}`
//!   with a status saying the kind (400 IllegalArgumentException, 401
//!   SecurityException, 403 IOException and AccessControlException, 404
//!   FileNotFoundException, 500 RuntimeException).
//!
//! Every request carries the identity: `user.name=` (simple authentication) or
//! `delegation=` (a delegation token).

use bytes::Bytes;
use reqwest::{Method, StatusCode, Url, header};
use serde::Deserialize;
use std::time::Duration;

/// Who the requests are made as.
#[derive(Clone, PartialEq)]
pub enum Identity {
    /// `user.name=USER`.
    User(String),
    /// `delegation=TOKEN`.
    Delegation(String),
    /// Neither (a cluster with no security, acting as its default web user).
    Anonymous,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::User(user) => write!(f, "user {user}"),
            Identity::Delegation(_) => f.write_str("a delegation token"),
            Identity::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HdfsError {
    /// No answer: connection refused or reset, a timeout.
    #[error("{op} {path}: no answer from {at}: {source}")]
    Transport {
        op: &'static str,
        path: String,
        at: &'static str,
        source: reqwest::Error,
    },
    /// HDFS answered with an error (a `RemoteException`, or a status without one).
    #[error("{op} {path}: {status} {exception}: {message}")]
    Remote {
        op: &'static str,
        path: String,
        status: StatusCode,
        exception: String,
        message: String,
    },
    /// An answer that does not follow the protocol.
    #[error("{op} {path}: {message}")]
    Protocol {
        op: &'static str,
        path: String,
        message: String,
    },
}

impl HdfsError {
    /// Whether sending the same request again can never succeed: the request itself is
    /// wrong (400: a bad path or parameter). Everything else — no answer, a namenode in
    /// safe mode or standby, a lease still held, permissions an operator can fix — may.
    pub fn is_permanent(&self) -> bool {
        matches!(self, HdfsError::Remote { status, .. } if *status == StatusCode::BAD_REQUEST)
    }

    /// Whether the path of a `MKDIRS` or `CREATE` can never be made: a file where a
    /// directory must be (`ParentNotDirectoryException`, or `FileAlreadyExistsException`
    /// from `MKDIRS`), a name over the namenode's limit (`PathComponentTooLongException`),
    /// a name HDFS refuses (`InvalidPathException`, any 400).
    pub fn refuses_path(&self) -> bool {
        let HdfsError::Remote {
            op,
            status,
            exception,
            ..
        } = self
        else {
            return false;
        };
        matches!(*op, "MKDIRS" | "CREATE")
            && (*status == StatusCode::BAD_REQUEST
                || matches!(
                    exception.as_str(),
                    "ParentNotDirectoryException"
                        | "PathComponentTooLongException"
                        | "InvalidPathException"
                )
                || (*op == "MKDIRS" && exception == "FileAlreadyExistsException"))
    }

    /// Whether the path does not exist (404 FileNotFoundException).
    pub fn is_not_found(&self) -> bool {
        matches!(self, HdfsError::Remote { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// Whether the file exists already (CREATE without overwrite).
    pub fn is_already_there(&self) -> bool {
        matches!(self, HdfsError::Remote { exception, .. } if exception == "FileAlreadyExistsException")
    }
}

/// What `GETFILESTATUS` says of a path.
#[derive(Debug, Deserialize, PartialEq)]
pub struct FileStatus {
    pub length: u64,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Deserialize)]
struct FileStatusAnswer {
    #[serde(rename = "FileStatus")]
    status: FileStatus,
}

#[derive(Deserialize)]
struct BooleanAnswer {
    boolean: bool,
}

#[derive(Deserialize)]
struct RemoteExceptionAnswer {
    #[serde(rename = "RemoteException")]
    remote: RemoteException,
}

#[derive(Deserialize)]
struct RemoteException {
    exception: String,
    #[serde(default)]
    message: String,
}

/// The client of one namenode.
pub struct WebHdfs {
    http: reqwest::Client,
    /// `http://namenode:9870`.
    namenode: Url,
    identity: Identity,
}

impl WebHdfs {
    pub fn new(namenode: Url, identity: Identity, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("runnel/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            namenode,
            identity,
        })
    }

    /// `http://namenode/webhdfs/v1/PATH?op=OP&…&user.name=…`, each path segment
    /// percent-encoded.
    fn url(&self, path: &str, op: &str, params: &[(&str, &str)]) -> Url {
        let mut url = self.namenode.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["webhdfs", "v1"])
                .extend(path.split('/').filter(|s| !s.is_empty()));
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("op", op);
            for (key, value) in params {
                query.append_pair(key, value);
            }
            match &self.identity {
                Identity::User(user) => {
                    query.append_pair("user.name", user);
                }
                Identity::Delegation(token) => {
                    query.append_pair("delegation", token);
                }
                Identity::Anonymous => {}
            }
        }
        url
    }

    /// `MKDIRS`: creates the directory and its parents (true when it exists after).
    pub async fn mkdirs(&self, dir: &str) -> Result<(), HdfsError> {
        let answer = self
            .call(Method::PUT, dir, "MKDIRS", &[], "namenode")
            .await?;
        let done: BooleanAnswer = json(answer, "MKDIRS", dir).await?;
        if done.boolean {
            Ok(())
        } else {
            Err(protocol("MKDIRS", dir, "the namenode answered false"))
        }
    }

    /// `CREATE` (never overwriting) with `data` as the file's first bytes.
    pub async fn create(&self, path: &str, data: Bytes) -> Result<(), HdfsError> {
        self.write(
            Method::PUT,
            path,
            "CREATE",
            &[("overwrite", "false")],
            data,
            StatusCode::CREATED,
        )
        .await
    }

    /// `APPEND`s `data` to the file.
    pub async fn append(&self, path: &str, data: Bytes) -> Result<(), HdfsError> {
        self.write(Method::POST, path, "APPEND", &[], data, StatusCode::OK)
            .await
    }

    /// `RENAME`: false when HDFS did not (the source is gone, the destination exists).
    pub async fn rename(&self, from: &str, to: &str) -> Result<bool, HdfsError> {
        let answer = self
            .call(
                Method::PUT,
                from,
                "RENAME",
                &[("destination", to)],
                "namenode",
            )
            .await?;
        let done: BooleanAnswer = json(answer, "RENAME", from).await?;
        Ok(done.boolean)
    }

    /// `TRUNCATE` to `length`: true when done at once, false when HDFS must first
    /// recover the last block (the length is right once `GETFILESTATUS` shows it).
    pub async fn truncate(&self, path: &str, length: u64) -> Result<bool, HdfsError> {
        let length = length.to_string();
        let answer = self
            .call(
                Method::POST,
                path,
                "TRUNCATE",
                &[("newlength", &length)],
                "namenode",
            )
            .await?;
        let done: BooleanAnswer = json(answer, "TRUNCATE", path).await?;
        Ok(done.boolean)
    }

    /// `GETFILESTATUS`; `None` when there is nothing at the path.
    pub async fn status(&self, path: &str) -> Result<Option<FileStatus>, HdfsError> {
        match self
            .call(Method::GET, path, "GETFILESTATUS", &[], "namenode")
            .await
        {
            Ok(answer) => {
                let status: FileStatusAnswer = json(answer, "GETFILESTATUS", path).await?;
                Ok(Some(status.status))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A namenode operation with no body; the answer when its status is a success.
    async fn call(
        &self,
        method: Method,
        path: &str,
        op: &'static str,
        params: &[(&str, &str)],
        at: &'static str,
    ) -> Result<reqwest::Response, HdfsError> {
        let answer = self
            .http
            .request(method, self.url(path, op, params))
            .send()
            .await
            .map_err(transport(op, path, at))?;
        if answer.status().is_success() {
            Ok(answer)
        } else {
            Err(remote_error(answer, op, path).await)
        }
    }

    /// The two steps of CREATE and APPEND: the namenode's redirect, then the data to the
    /// datanode it names.
    async fn write(
        &self,
        method: Method,
        path: &str,
        op: &'static str,
        params: &[(&str, &str)],
        data: Bytes,
        expected: StatusCode,
    ) -> Result<(), HdfsError> {
        let redirect = self
            .http
            .request(method.clone(), self.url(path, op, params))
            .send()
            .await
            .map_err(transport(op, path, "namenode"))?;
        if redirect.status() != StatusCode::TEMPORARY_REDIRECT {
            return Err(if redirect.status().is_success() {
                protocol(op, path, "the namenode answered without a 307 redirect")
            } else {
                remote_error(redirect, op, path).await
            });
        }
        let location = redirect
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| self.namenode.join(l).ok())
            .ok_or_else(|| protocol(op, path, "the namenode's 307 has no usable Location"))?;
        let answer = self
            .http
            .request(method, location)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(transport(op, path, "datanode"))?;
        if answer.status() == expected {
            Ok(())
        } else if answer.status().is_success() {
            Err(protocol(
                op,
                path,
                &format!("the datanode answered {}, not {expected}", answer.status()),
            ))
        } else {
            Err(remote_error(answer, op, path).await)
        }
    }
}

/// Makes a request's failure to get an answer from `at` an error.
fn transport(
    op: &'static str,
    path: &str,
    at: &'static str,
) -> impl FnOnce(reqwest::Error) -> HdfsError {
    let path = path.to_owned();
    move |source| HdfsError::Transport {
        op,
        path,
        at,
        source,
    }
}

fn protocol(op: &'static str, path: &str, message: &str) -> HdfsError {
    HdfsError::Protocol {
        op,
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

async fn json<T: serde::de::DeserializeOwned>(
    answer: reqwest::Response,
    op: &'static str,
    path: &str,
) -> Result<T, HdfsError> {
    let body = answer
        .bytes()
        .await
        .map_err(transport(op, path, "namenode"))?;
    serde_json::from_slice(&body).map_err(|e| {
        protocol(
            op,
            path,
            &format!(
                "unexpected answer ({e}): {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        )
    })
}

/// The error an unsuccessful answer carries: its `RemoteException`, or its status and
/// the start of its body.
async fn remote_error(answer: reqwest::Response, op: &'static str, path: &str) -> HdfsError {
    let status = answer.status();
    let body = answer.bytes().await.unwrap_or_default();
    let (exception, message) = match serde_json::from_slice::<RemoteExceptionAnswer>(&body) {
        Ok(RemoteExceptionAnswer { remote }) => (remote.exception, remote.message),
        Err(_) => (
            "(no RemoteException)".to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    HdfsError::Remote {
        op,
        path: path.to_owned(),
        status,
        exception,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_op_the_identity_and_an_encoded_path() {
        let client = WebHdfs::new(
            "http://nn:9870".parse().unwrap(),
            Identity::User("edge 1".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        let url = client.url("/logs/a b/x#1.log", "RENAME", &[("destination", "/d/y")]);
        assert_eq!(
            url.as_str(),
            "http://nn:9870/webhdfs/v1/logs/a%20b/x%231.log?op=RENAME&destination=%2Fd%2Fy&user.name=edge+1"
        );
        let client = WebHdfs::new(
            "http://nn:9870/".parse().unwrap(),
            Identity::Delegation("T0K".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            client.url("/f", "GETFILESTATUS", &[]).as_str(),
            "http://nn:9870/webhdfs/v1/f?op=GETFILESTATUS&delegation=T0K"
        );
        assert_eq!(
            format!("{:?}", Identity::Delegation("T0K".into())),
            "a delegation token"
        );
    }
}
