using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Grains.Protection;

/// <summary>
/// Data Protection's key repository on a silo, backed by <see cref="IDataProtectionKeysGrain"/>: every silo of a
/// cluster reads and writes the same key ring, in the cluster's grain storage.
/// </summary>
/// <remarks>
/// Data Protection calls a repository synchronously and from anywhere: at start-up, from requests, from grains. So
/// the grain call runs on the thread pool (never on a grain's scheduler, where blocking on another grain could stall
/// it) and the caller waits for it. Before the silo is active the key ring cannot be read: the call fails at once
/// (Data Protection retries at its next use) instead of waiting for a silo whose start may be what is waiting. Data
/// Protection's start-up preload is therefore removed (<see cref="GrainsHosting.UseGrainKeyRing"/>); the first
/// protect or unprotect, after the silo is up, loads the ring.
/// </remarks>
public sealed class GrainKeyRepository(IServiceProvider services) : IXmlRepository, ILifecycleParticipant<ISiloLifecycle>
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(30);
    private readonly TaskCompletionSource _active = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(GrainKeyRepository), ServiceLifecycleStage.Active,
            _ => { _active.TrySetResult(); return Task.CompletedTask; },
            _ => Task.CompletedTask);

    public IReadOnlyCollection<XElement> GetAllElements() =>
        Call(async keys => (IReadOnlyCollection<XElement>)[.. (await keys.GetAllAsync()).Select(x => XElement.Parse(x))]);

    public void StoreElement(XElement element, string friendlyName) =>
        Call(async keys =>
        {
            await keys.StoreAsync(friendlyName, element.ToString(SaveOptions.DisableFormatting));
            return true;
        });

    private T Call<T>(Func<IDataProtectionKeysGrain, Task<T>> call)
    {
        if (!_active.Task.IsCompleted)
        {
            throw new InvalidOperationException("the Data Protection key ring lives in the cluster's grain storage and is read once the silo is active");
        }
        var keys = services.GetRequiredService<IGrainFactory>().GetGrain<IDataProtectionKeysGrain>(0);
        return Task.Run(() => call(keys).WaitAsync(CallTimeout)).GetAwaiter().GetResult();
    }
}
