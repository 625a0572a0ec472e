namespace MedServe.Cli;

/// <summary>What <c>medserve</c> exits with; scripts can rely on these (client/README.md lists them).</summary>
public static class ExitCodes
{
    /// <summary>Done.</summary>
    public const int Ok = 0;

    /// <summary>Something unexpected failed (a server error, a bug).</summary>
    public const int Unexpected = 1;

    /// <summary>The command line or what it names is wrong: unknown option, bad package, bad input tensor, file missing.</summary>
    public const int Usage = 2;

    /// <summary>No such model, version or deployment.</summary>
    public const int NotFound = 3;

    /// <summary>Conflicts with the cluster's state: the version exists already, it is deployed.</summary>
    public const int Conflict = 4;

    /// <summary>
    /// Cannot be served now: no cluster reachable, model not ready, a deployment that settled Failed or Pending,
    /// queue full, timed out. Worth retrying later.
    /// </summary>
    public const int Unavailable = 5;

    /// <summary>Your key's role may not do this, or the key is unknown, revoked or expired.</summary>
    public const int Forbidden = 6;

    /// <summary><c>audit verify</c>: the audit trail has an edited, removed or reordered record.</summary>
    public const int Tampered = 7;

    /// <summary>The exit code of a MedServe error kind.</summary>
    public static int Of(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidInput or ErrorKind.TooLarge or ErrorKind.UnsupportedMediaType => Usage,
        ErrorKind.NotFound => NotFound,
        ErrorKind.Conflict => Conflict,
        ErrorKind.NotReady or ErrorKind.Overloaded or ErrorKind.Timeout or ErrorKind.Unavailable => Unavailable,
        ErrorKind.Forbidden => Forbidden,
        _ => Unexpected,
    };
}
