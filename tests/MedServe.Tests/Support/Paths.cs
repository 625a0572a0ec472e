namespace MedServe.Tests.Support;

/// <summary>Where the repository, its samples and the shared test data are.</summary>
public static class Paths
{
    public static string Repo { get; } = FindRepo();

    public static string Samples => Path.Combine(Repo, "samples");

    /// <summary><c>../shared/data</c> beside the checkout (CI has it there too); MEDSERVE_SHARED overrides.</summary>
    public static string SharedData => Path.Combine(Environment.GetEnvironmentVariable("MEDSERVE_SHARED") ?? Path.Combine(Repo, "..", "shared"), "data");

    public static string Data(params string[] parts) => Path.Combine([SharedData, .. parts]);

    public static string TempDirectory(string prefix)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"medserve-{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string FindRepo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Cluster.sln")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("Cluster.sln not found above " + AppContext.BaseDirectory);
    }
}
